"""Which object keys and request paths are safe: one rule for every service and the stores.

A key names an object inside a store and nothing else: relative, no empty, ``.`` or ``..``
segment, no backslash or NUL (which some stores and file systems read as separators or
terminators), no other control character (obstore refuses them in a path), no segment over
255 bytes of UTF-8 (what a local file system's name holds) and at most 1,024 bytes in all
(S3's and Google Cloud Storage's limit). A key past those limits cannot name a stored object
in some store, so it names none in any: a request for one is a bad request, not a store
failure (a 300-byte file name used to make the files edge and docs hosting answer 503 and
count an unavailable primary). A request path maps to a key only if it decodes to such a key
without help from escapes that hide separators (``%2f``, ``%5c``) or NUL (``%00``).

The files edge, docs hosting and the stores used to carry three versions of this check.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

MAX_SEGMENT_BYTES = 255  # NAME_MAX of Linux file systems
MAX_KEY_BYTES = 1024  # S3's and GCS's longest key
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_safe_key(key: str) -> bool:
    """Whether ``key`` names only what it says (a trailing ``/`` names a directory)."""
    path = "/" + key
    return bool(key) and key[0] != "/" and _clean(path) and not _CONTROL.search(key) and _fits(path)


def check_key(key: str) -> str:
    """``key`` itself, or ValueError when it is not safe."""
    if not is_safe_key(key):
        raise ValueError(f"invalid object key: {key!r}")
    return key


def path_of(raw: bytes) -> str | None:
    """The decoded request path (``raw``: without query or fragment), or None when it is not
    ``/`` followed by a safe key: hostile escapes, bytes that are not UTF-8, traversal.

    On the files edge's hot path: a handful of substring searches, no call but this one.
    """
    try:
        path = raw.decode("utf-8")  # percent-escapes are ASCII: decode first, search once
    except UnicodeDecodeError:
        return None
    if "%" in path:
        lowered = path.lower()
        if "%2f" in lowered or "%5c" in lowered or "%00" in lowered:
            return None
        try:
            path = unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            return None
        if _CONTROL.search(path):  # the server refuses raw ones: only escapes bring them
            return None
    if path[:1] != "/" or not _clean(path):
        return None
    if len(raw) > MAX_SEGMENT_BYTES and not _fits(path):  # decoding never lengthens a path
        return None
    return path


def _fits(path: str) -> bool:
    """``path`` (``/`` and a key) is within the key limits every store has."""
    size = len(path.encode("utf-8", "surrogateescape"))
    if size <= MAX_SEGMENT_BYTES:
        return True
    return size <= MAX_KEY_BYTES + 1 and all(
        len(segment.encode("utf-8", "surrogateescape")) <= MAX_SEGMENT_BYTES
        for segment in path.split("/")
    )


def _clean(path: str) -> bool:
    """``path`` (starting with ``/``) has no empty, ``.`` or ``..`` segment inside, no
    backslash, no NUL. Every dot segment contains ``/.``, so most paths need one search."""
    if "\\" in path or "\x00" in path or "//" in path:
        return False
    if "/." not in path:
        return True
    framed = path + "/"
    return "/./" not in framed and "/../" not in framed
