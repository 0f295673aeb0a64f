"""Which object keys and request paths are safe: one rule for every service and the stores.

A key names an object inside a store and nothing else: relative, no empty, ``.`` or ``..``
segment, no backslash or NUL (which some stores and file systems read as separators or
terminators). A request path maps to a key only if it decodes to such a key without help
from escapes that hide separators (``%2f``, ``%5c``) or NUL (``%00``).

The files edge, docs hosting and the stores used to carry three versions of this check.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes


def is_safe_key(key: str) -> bool:
    """Whether ``key`` names only what it says (a trailing ``/`` names a directory)."""
    return bool(key) and key[0] != "/" and _clean("/" + key)


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
    if path[:1] != "/" or not _clean(path):
        return None
    return path


def _clean(path: str) -> bool:
    """``path`` (starting with ``/``) has no empty, ``.`` or ``..`` segment inside, no
    backslash, no NUL. Every dot segment contains ``/.``, so most paths need one search."""
    if "\\" in path or "\x00" in path or "//" in path:
        return False
    if "/." not in path:
        return True
    framed = path + "/"
    return "/./" not in framed and "/../" not in framed
