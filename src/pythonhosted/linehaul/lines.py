"""Decompressed text -> blocks of whole lines, with a maximum line length.

Lines are split on ``\\n`` only. A block holds the whole lines of one window (plus the start
of the first, carried over from the window before): at most a window and a line long, one
copy of the text. A line longer than ``max_line`` bytes (the newline not counted) is never
held whole: it is cut, counted in :attr:`LineCutter.too_long`, and its first
:data:`SAMPLE_BYTES` (at most ``max_line``) are kept for the first :data:`SAMPLES` such lines
(:attr:`LineCutter.samples`); the rest of it is skipped while looking for its newline. So a
gigabyte without a newline costs the memory of one window, not a gigabyte.

Finding long lines inside a block costs a few ``find`` calls per block, not one per line: a
line longer than ``max_line`` covers some whole aligned stretch of ``(max_line + 1) // 2``
bytes, so only stretches without any newline need a closer look.
"""

from __future__ import annotations

SAMPLE_BYTES = 4096
SAMPLES = 16


class LineCutter:
    """Feed pieces of text in order (:meth:`cut`), then :meth:`finish`."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._stretch = (max_line + 1) // 2
        self._sample_size = min(SAMPLE_BYTES, max_line)
        self._rest: list[bytes] = []  # the start of a line that goes on in the next piece
        self._rest_size = 0
        self._skipping = False  # inside a line that is too long, until its newline
        self._sample = b""  # of the line being skipped
        self.too_long = 0
        self.samples: list[bytes] = []
        self.dropped = 0  # partial lines dropped at the end of incomplete text

    def cut(self, pieces: list[bytes]) -> list[bytes]:
        """The blocks of whole lines that ``pieces`` (consecutive text, a window) complete:
        everything up to the last newline in them, joined once."""
        first = 0  # the piece and the offset in it where lines not given out start
        start = 0
        if self._skipping:
            while first < len(pieces):
                newline = pieces[first].find(b"\n")
                if newline >= 0:
                    self._skipping = False
                    self._count_long(self._sample)
                    start = newline + 1
                    break
                first += 1
            else:
                return []
        last = len(pieces) - 1
        while last >= first:
            cut = pieces[last].rfind(b"\n", start if last == first else 0) + 1
            if cut:
                break
            last -= 1
        else:
            for index in range(first, len(pieces)):
                self._keep(memoryview(pieces[index])[start if index == first else 0 :])
            return []
        if first == last and start == 0 and cut == len(pieces[last]) and not self._rest:
            block = pieces[last]
        else:
            parts: list[bytes | memoryview] = [*self._rest]
            if first == last:
                parts.append(memoryview(pieces[first])[start:cut])
            else:
                parts.append(memoryview(pieces[first])[start:])
                parts.extend(pieces[first + 1 : last])
                parts.append(memoryview(pieces[last])[:cut])
            block = b"".join(parts)
            self._rest, self._rest_size = [], 0
        self._keep(memoryview(pieces[last])[cut:])
        for index in range(last + 1, len(pieces)):
            self._keep(memoryview(pieces[index]))
        return self._without_long_lines(block)

    def finish(self, *, complete: bool = True) -> list[bytes]:
        """The last line as a block, given a newline if it has none; dropped (and counted in
        :attr:`dropped`) if the text is not ``complete``: it ended at damage, so the line's
        end is lost."""
        if self._skipping:
            self._skipping = False
            self._count_long(self._sample)
            return []
        last = b"".join(self._rest)
        self._rest, self._rest_size = [], 0
        if not last:
            return []
        if not complete:
            self.dropped += 1
            return []
        return self._without_long_lines(last + b"\n")

    def _keep(self, rest: memoryview) -> None:
        """Carry the start of a line over; once it is too long, sample it and skip on."""
        if not rest or self._skipping:
            return
        self._rest.append(bytes(rest))
        self._rest_size += len(rest)
        if self._rest_size > self.max_line:
            self._sample = b"".join(self._rest)[: self._sample_size]
            self._rest, self._rest_size = [], 0
            self._skipping = True

    def _count_long(self, sample: bytes) -> None:
        self.too_long += 1
        if len(self.samples) < SAMPLES:
            self.samples.append(sample)

    def _without_long_lines(self, block: bytes) -> list[bytes]:
        """``block`` as blocks of lines no longer than ``max_line``: the long ones cut out."""
        stretch = self._stretch
        out: list[bytes] = []
        begin = 0  # of the lines not given out yet
        position = begin
        while position + stretch <= len(block):
            if block.find(b"\n", position, position + stretch) >= 0:
                position += stretch
                continue
            start = block.rfind(b"\n", 0, position) + 1
            end = block.find(b"\n", position + stretch)  # the block ends with a newline
            if end - start <= self.max_line:
                position = end + 1
                continue
            if start > begin:
                out.append(block[begin:start])
            self._count_long(block[start : min(end, start + self._sample_size)])
            begin = position = end + 1
        if begin == 0:
            return [block]
        if begin < len(block):
            out.append(block[begin:])
        return out
