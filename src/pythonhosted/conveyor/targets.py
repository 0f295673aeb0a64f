"""Redirect targets: what may go out in a ``Location`` header as it was given.

One check for every target conveyor did not compute itself: ``redirects.txt`` entries (written
by ``docs redirect`` or by hand) and the file URLs a package JSON API returns.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

MAX_TARGET = 2048  # characters; longer URLs are unreliable in browsers and proxies anyway
# Control, format (bidi overrides, zero-width) and separator characters; for ASCII text (the
# common case, ~10x faster) these are the C0 controls, space and DEL.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_ASCII_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


class InvalidTarget(ValueError):
    """A redirect target that must never go out in a Location header; the message says why."""


def check_target(base_uri: str) -> str:
    """``base_uri`` if it is an absolute http(s) URL with a host and nothing hostile in it.

    Refused: other schemes (``javascript:``, ``data:``, ``ftp:``), scheme-relative and
    host-less URLs (``//evil.example``, ``https:///x``, ``https:evil``), user info
    (``https://pypi.org@evil.example``), backslashes (browsers read them as ``/``), control
    and format characters (CR/LF would split the header; bidi overrides disguise a host) and
    white space.
    """
    if len(base_uri) > MAX_TARGET:
        raise InvalidTarget(f"must be at most {MAX_TARGET} characters, got {len(base_uri)}")
    if _ASCII_UNSAFE.search(base_uri) if base_uri.isascii() else _unsafe_unicode(base_uri):
        raise InvalidTarget(f"must not contain control characters or spaces, got {base_uri!r}")
    if "\\" in base_uri:
        raise InvalidTarget(f"must not contain backslashes, got {base_uri!r}")
    try:
        parts = urlsplit(base_uri)
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError:
        raise InvalidTarget(f"must be an http(s) URL, got {base_uri!r}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidTarget(f"must be an http(s) URL, got {base_uri!r}")
    if not parts.hostname:
        raise InvalidTarget(f"must be an http(s) URL with a host, got {base_uri!r}")
    if "@" in parts.netloc:
        raise InvalidTarget(f"must not carry user info, got {base_uri!r}")
    return base_uri


def _unsafe_unicode(text: str) -> bool:
    return any(unicodedata.category(char) in _UNSAFE_CATEGORIES for char in text)
