"""Content-Type and Content-Encoding of a docs file, from its name alone (spec rule 13).

Python's built-in table only, never the host's ``/etc/mime.types``, so every machine answers
the same; plus the web-font and source-map types Sphinx sites ship. Text gets an explicit
UTF-8 charset (Sphinx writes UTF-8), so browsers never guess.
"""

from __future__ import annotations

import mimetypes
from functools import lru_cache

_TYPES = mimetypes.MimeTypes()
for _type, _ext in (
    ("font/woff2", ".woff2"),
    ("font/woff", ".woff"),
    ("font/ttf", ".ttf"),
    ("application/json", ".map"),
    ("text/markdown", ".md"),
):
    _TYPES.add_type(_type, _ext)

OCTETS = b"application/octet-stream"
_UTF8_TYPES = frozenset({"application/javascript", "application/json"})


@lru_cache(maxsize=8192)
def content_headers(key: str) -> tuple[tuple[bytes, bytes], ...]:
    """The ``content-type`` (and ``content-encoding``, for e.g. ``.gz``) headers for ``key``."""
    kind, encoding = _TYPES.guess_type(key, strict=False)
    if kind is None:
        value = OCTETS
    elif kind.startswith("text/") or kind in _UTF8_TYPES:
        value = f"{kind}; charset=utf-8".encode()
    else:
        value = kind.encode()
    headers = [(b"content-type", value)]
    if encoding is not None:
        headers.append((b"content-encoding", encoding.encode()))
    return tuple(headers)
