"""Content-Type of a docs file, from its name alone (spec rule 13).

Python's built-in table only, never the host's ``/etc/mime.types``, so every machine answers
the same; plus the web-font and source-map types Sphinx sites ship. Text gets an explicit
UTF-8 charset (Sphinx writes UTF-8), so browsers never guess.

A compressed file (``.tar.gz``, ``.gz``, ``.bz2``, ``.xz``, ``.br``, ``.zst``…) is served as
the bytes it is, with the compression format's type and never a ``Content-Encoding``: with
one, browsers and ``curl --compressed`` unpack it and save the result under the compressed
name (nginx does the same).
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
    ("application/zstd", ".zst"),
):
    _TYPES.add_type(_type, _ext)

# What mimetypes calls an encoding is, for a file on disk, the file's own format.
COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
OCTETS = b"application/octet-stream"
_UTF8_TYPES = frozenset({"application/javascript", "application/json"})
# Longer name parts are no extension anyone registered; ignoring them keeps the cache small.
_SUFFIX_PART_MAX = 16


def content_headers(key: str) -> tuple[tuple[bytes, bytes], ...]:
    """The ``content-type`` header for ``key``, from its last two name suffixes."""
    return _headers_for_suffix(_suffix(key))


def _suffix(key: str) -> str:
    """``.tar.gz`` for ``a/b-1.0.tar.gz``, ``.html`` for ``index.html``, "" for ``README``."""
    parts = key.rpartition("/")[2].split(".")[1:][-2:]
    if parts and len(parts[-1]) > _SUFFIX_PART_MAX:
        return ""
    if len(parts) == 2 and len(parts[0]) > _SUFFIX_PART_MAX:
        parts = parts[1:]
    return "".join("." + part for part in parts)


@lru_cache(maxsize=1024)  # keyed by suffix (at most 34 characters), so bounded in bytes too
def _headers_for_suffix(suffix: str) -> tuple[tuple[bytes, bytes], ...]:
    kind, encoding = _TYPES.guess_type("name" + suffix, strict=False)
    if encoding is not None:
        kind = COMPRESSED_TYPES.get(encoding)
    if kind is None:
        value = OCTETS
    elif kind.startswith("text/") or kind in _UTF8_TYPES:
        value = f"{kind}; charset=utf-8".encode()
    else:
        value = kind.encode()
    return ((b"content-type", value),)
