"""Recognise raster images by their first bytes, for upstreams that send no useful type.

Only formats browsers render as images and that cannot carry script are listed; SVG is text
and is never sniffed (it must be declared ``image/svg+xml`` to pass).
"""

from __future__ import annotations

SNIFF_BYTES = 16
GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})


def sniff_image(head: bytes) -> str | None:
    """The image subtype ``head`` starts with (``png`` for ``image/png``), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "avif"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "x-icon"
    if head.startswith(b"BM"):
        return "bmp"
    return None
