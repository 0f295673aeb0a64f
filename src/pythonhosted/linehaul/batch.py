"""A log batch (gzip'd or plain bytes) -> NDJSON rows, plus the lines that cannot be rows.

Shared by ``pythonhosted linehaul parse`` and the ingest worker. Lines are split on ``\\n``
only and decoded as UTF-8 with ``errors="replace"``: a stray non-UTF-8 byte (a client's user
agent, usually) becomes U+FFFD and the event still counts, and every row is valid UTF-8, which
BigQuery's NDJSON loader requires. (The reference decodes strictly and sends such a line to
"unprocessed".) Unprocessable lines are passed on as the original bytes.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import orjson
from isal import isal_zlib

from pythonhosted.linehaul.columns import object_tables
from pythonhosted.linehaul.events import Row, UnprocessableLine, parse

GZIP_MAGIC = b"\x1f\x8b"
_ENCODER_SIZE = 16_384
BLOCK_SIZE = 1 << 20
# isal's type stubs declare ``error`` as an instance; it is the exception class.
_INFLATE_ERROR = cast(type[Exception], isal_zlib.error)


class CorruptBatch(ValueError):
    """The object is not a complete gzip stream (truncated, garbled, or not gzip at all)."""


@dataclass
class Counts:
    """What became of a batch's lines."""

    rows: int = 0
    ignored: int = 0
    unprocessable: int = 0

    def add(self, other: Counts) -> None:
        self.rows += other.rows
        self.ignored += other.ignored
        self.unprocessable += other.unprocessable


class RowEncoder:
    """A row -> one NDJSON line, serialising each shared ``details`` record only once.

    Rows with the same user agent share one details record (a dict subclass, which orjson
    serialises on a slow path); caching its JSON per record makes encoding about 3x faster.
    The cache keys on ``id`` and holds the record itself, so an id cannot be reused while it
    is cached; it is cleared when it grows past a bound.
    """

    def __init__(self) -> None:
        self._details: dict[int, tuple[object, bytes]] = {}

    def __call__(self, row: Row) -> bytes:
        details = row.pop("details")
        cached = self._details.get(id(details))
        if cached is None:
            if len(self._details) >= _ENCODER_SIZE:
                self._details.clear()
            cached = (details, b',"details":' + orjson.dumps(details) + b"}\n")
            self._details[id(details)] = cached
        row_json = orjson.dumps(row)
        row["details"] = details
        return row_json[:-1] + cached[1]


def open_log(stream: BinaryIO) -> Iterable[bytes]:
    """The batch's lines, gunzipped when the stream starts with gzip's magic bytes."""
    if isinstance(stream, io.BufferedReader):
        buffered = stream
    else:  # BytesIO and the like can be buffered too; peek needs a BufferedReader
        buffered = io.BufferedReader(cast(io.RawIOBase, stream))
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    return buffered


def parse_lines(
    lines: Iterable[bytes],
    write_row: Callable[[bytes], object],
    write_unprocessed: Callable[[bytes], object] | None = None,
) -> Counts:
    """Parse every line in order: each row to ``write_row`` as one JSON line, each
    unprocessable line (newline-terminated) to ``write_unprocessed``."""
    counts = Counts()
    encode = RowEncoder()
    for line in lines:
        try:
            row = parse(line.decode("utf-8", "replace"))
        except UnprocessableLine:
            counts.unprocessable += 1
            if write_unprocessed is not None:
                write_unprocessed(line if line.endswith(b"\n") else line + b"\n")
            continue
        if row is None:
            counts.ignored += 1
        else:
            counts.rows += 1
            write_row(encode(row))
    return counts


@dataclass
class Converted:
    """One whole log object's results: NDJSON per table and the unprocessable lines."""

    downloads: bytes = b""
    simple: bytes = b""
    unprocessed: bytes = b""
    earliest: str | None = None  # the earliest row timestamp, as written in rows
    counts: Counts = field(default_factory=Counts)


def gunzip(data: bytes) -> Iterator[bytes]:
    """The object decompressed (every gzip member), in pieces of up to :data:`BLOCK_SIZE`.

    Pieces rather than one buffer: a fresh buffer the size of the object costs a page
    fault per 4 kB, more than inflating into it; small pieces reuse the same memory.
    Raises :class:`CorruptBatch` when ``data`` is not a complete gzip stream.
    """
    while data:
        if data[:2] != GZIP_MAGIC:
            raise CorruptBatch("not a gzip stream")
        # ISA-L inflates 2-3x faster than zlib, with the same API and checks (gzip header,
        # CRC and size trailer).
        inflate = isal_zlib.decompressobj(wbits=31)
        try:
            while not inflate.eof:
                piece = inflate.decompress(data, BLOCK_SIZE)
                data = inflate.unconsumed_tail
                if piece:
                    yield piece
                elif not data and not inflate.eof:
                    raise CorruptBatch("compressed data ends early")
        except _INFLATE_ERROR as exc:
            raise CorruptBatch(str(exc)) from exc
        data = inflate.unused_data.lstrip(b"\x00")  # members may be padded with zeros


def line_blocks(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Decompressed pieces -> blocks of whole lines, each line ending with a newline (one is
    added to a last line without)."""
    rest: list[bytes] = []
    for piece in pieces:
        cut = piece.rfind(b"\n") + 1
        if not cut:
            rest.append(piece)
            continue
        if cut == len(piece) and not rest:
            yield piece
        else:  # one copy: join reads the view of the piece in place
            yield b"".join((*rest, memoryview(piece)[:cut]))
        rest = [piece[cut:]] if cut < len(piece) else []
    tail = b"".join(rest)
    if tail:
        yield tail + b"\n"


class _Results:
    """The growing results of one object: NDJSON per table, unprocessed lines, counts."""

    def __init__(self) -> None:
        self.tables = object_tables()
        self.unprocessed = io.BytesIO()
        self.counts = Counts()
        self.earliest = "~"  # sorts after every timestamp

    def add_block(self, block: bytes) -> None:
        """Whole lines: column by column when they allow it, else in halves, else line by
        line (so a rare odd line costs a few small blocks, not the whole block)."""
        counted = self.tables.convert(block) if _utf8(block) else None
        if counted is not None:
            rows, ignored, earliest = counted
            self.counts.rows += rows
            self.counts.ignored += ignored
            if earliest is not None and earliest < self.earliest:
                self.earliest = earliest
            return
        middle = block.find(b"\n", len(block) // 2, -1) + 1 or block.rfind(b"\n", 0, -1) + 1
        if middle:
            self.add_block(block[:middle])
            self.add_block(block[middle:])
        else:
            self.add_line(block[:-1])

    def add_line(self, line: bytes) -> None:
        """One line through the per-line parser (non-UTF-8 bytes become U+FFFD)."""
        try:
            row = parse(line.decode("utf-8", "replace"))
        except UnprocessableLine:
            self.unprocessed.write(line + b"\n")
            self.counts.unprocessable += 1
            return
        if row is None:
            self.counts.ignored += 1
            return
        self.counts.rows += 1
        if row["timestamp"] < self.earliest:
            self.earliest = row["timestamp"]
        row_json = orjson.dumps(row) + b"\n"
        if "file" in row:
            self.tables.append(row_json, b"")
        else:
            self.tables.append(b"", row_json)

    def converted(self) -> Converted:
        downloads, simple = self.tables.finish()
        return Converted(
            downloads,
            simple,
            self.unprocessed.getvalue(),
            None if self.earliest == "~" else self.earliest,
            self.counts,
        )


def _utf8(block: bytes) -> bool:
    if block.isascii():
        return True
    try:
        block.decode()
    except UnicodeDecodeError:
        return False
    return True


def convert(data: bytes) -> Converted:
    """Gunzip and convert one log object in memory, rows split by table.

    The object is inflated and converted a block (about a megabyte) at a time, each block
    column by column (:mod:`.columns`) when its lines allow it; the rows are the same as the
    per-line parser's, serialised by orjson. Raises :class:`CorruptBatch` when ``data`` is not
    a complete gzip stream.
    """
    results = _Results()
    for block in line_blocks(gunzip(data)):
        results.add_block(block)
    return results.converted()
