"""Streaming gunzip: compressed bytes in, any number of gzip members, windows of exactly
:data:`WINDOW` decompressed bytes out.

Everything is bounded, whatever the object's size: each step inflates at most :data:`SLICE`
compressed bytes into at most :data:`PIECE` decompressed ones, and the decompressor keeps
what it has not read yet itself (``IgzipDecompressor``; handing ``zlib``'s whole
``unconsumed_tail`` back at every step copied the rest of the object again and again:
quadratic). ISA-L inflates 2-3x faster than zlib and checks the same things (gzip header, CRC
and size trailer).

Windows have exactly :data:`WINDOW` bytes (the last one fewer), so where they start depends on
the decompressed text only, not on how the store happened to deliver the object: ingest cuts
its results into parts at window boundaries, and a retry must cut them at the same places. A
window is a list of pieces; whoever cuts it into lines joins them once.

Damage (a truncated object, a flipped bit, bytes that are not gzip) ends the stream where it
is found: the windows before it are all given out, and :attr:`Inflater.damage` says where and
why. Deflate notices many flipped bits only at the member's CRC, so lines decoded before then
come out as they decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from isal import igzip_lib

GZIP_MAGIC = b"\x1f\x8b"
WINDOW = 1 << 20
SLICE = 1 << 16
PIECE = 1 << 16
# isal's type stubs declare ``error`` as an instance; it is the exception class.
_INFLATE_ERROR = cast(type[Exception], igzip_lib.error)

Window = list[bytes]


class CorruptBatch(ValueError):
    """The object is not a complete gzip stream (truncated, garbled, or not gzip at all)."""

    def __init__(self, reason: str, at: int = 0) -> None:
        super().__init__(reason)
        self.at = at  # where in the slice being read, when known


@dataclass(frozen=True)
class Damage:
    """Where decoding stopped: ``offset`` compressed bytes were read before the damage
    (exactly, for bytes that do not start a gzip member; for damage inside a member, before
    the step of at most :data:`SLICE` bytes that found it; a truncated object: all)."""

    offset: int
    reason: str


class Inflater:
    """Feed compressed chunks in order, then :meth:`finish`; both give the complete windows
    decompressed so far, one at a time as they fill (a small chunk may inflate to gigabytes:
    take each window before asking for the next).

    ``window`` is the window size (tests make it small); it must stay the same for an object
    across retries, since results are cut at window boundaries.
    """

    def __init__(self, window: int = WINDOW) -> None:
        self._window_size = window
        self._inflate: igzip_lib.IgzipDecompressor | None = None
        self._between = b""  # after a member: bytes that must start the next one
        self._pieces: Window = []
        self._size = 0  # of the pieces
        self.offset = 0  # compressed bytes read (before the slice under way)
        self.damage: Damage | None = None

    def feed(self, chunk: bytes) -> Iterator[Window]:
        """The windows completed by ``chunk``; nothing more once damage was found."""
        view = memoryview(chunk)
        for start in range(0, len(view), SLICE):
            if self.damage is not None:
                return
            piece = view[start : start + SLICE]
            try:
                yield from self._inflate_slice(piece)
            except CorruptBatch as exc:
                self.damage = Damage(self.offset + exc.at, str(exc))
            else:
                self.offset += len(piece)

    def finish(self) -> Iterator[Window]:
        """The last window (shorter than the others); sets :attr:`damage` if the object
        ended inside a member or with stray bytes."""
        if self.damage is None:
            if self._inflate is not None:
                self.damage = Damage(self.offset, "compressed data ends early")
            elif self._between:
                self.damage = Damage(self.offset - len(self._between), "not a gzip stream")
        last, self._pieces, self._size = self._pieces, [], 0
        if last:
            yield last

    def _inflate_slice(self, data: memoryview) -> Iterator[Window]:
        size = len(data)
        while True:
            if self._inflate is None:
                data = self._start_member(data, size - len(data))
                if self._inflate is None:
                    return  # more bytes needed to see the next member's start
            need = self._window_size - self._size
            try:
                piece = self._inflate.decompress(data, min(need, PIECE))
            except _INFLATE_ERROR as exc:
                raise CorruptBatch(str(exc)) from exc
            data = memoryview(b"")
            if piece:
                self._pieces.append(piece)
                self._size += len(piece)
                if self._size == self._window_size:
                    window, self._pieces, self._size = self._pieces, [], 0
                    yield window
            if self._inflate.eof:
                data = memoryview(self._inflate.unused_data)
                self._inflate = None
            elif self._inflate.needs_input:
                return

    def _start_member(self, data: memoryview, at: int) -> memoryview:
        """Skip the zeros that may pad members, then start the next member if its magic is
        there; keeps a lone first byte until the next slice shows the second. ``data``
        starts ``at`` bytes into the slice."""
        joined = self._between + data
        pending = joined.lstrip(b"\x00")
        start = at - len(self._between) + len(joined) - len(pending)
        self._between = b""
        if len(pending) < len(GZIP_MAGIC):
            self._between = pending
            return memoryview(b"")
        if not pending.startswith(GZIP_MAGIC):
            raise CorruptBatch("not a gzip stream", start)
        self._inflate = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
        return memoryview(pending)
