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
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import orjson

from pythonhosted.linehaul.events import Row, UnprocessableLine, parse

GZIP_MAGIC = b"\x1f\x8b"
_ENCODER_SIZE = 16_384


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

    downloads: list[bytes] = field(default_factory=list)
    simple: list[bytes] = field(default_factory=list)
    unprocessed: list[bytes] = field(default_factory=list)
    earliest: str | None = None  # the earliest row timestamp, as written in rows
    counts: Counts = field(default_factory=Counts)


def gunzip(data: bytes) -> bytes:
    """The whole object decompressed (every gzip member); empty bytes stay empty."""
    if not data:
        return b""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise CorruptBatch(str(exc) or type(exc).__name__) from exc


def convert(data: bytes) -> Converted:
    """Gunzip and parse one log object in memory, rows split by table.

    The object is decompressed in one call (far cheaper than a line-by-line gzip stream) and,
    when it is valid UTF-8 as nearly every batch is, decoded once; only a batch holding other
    bytes is decoded line by line (with U+FFFD), so unprocessable lines stay byte-exact.
    Raises :class:`CorruptBatch` when ``data`` is not a complete gzip stream.
    """
    text = gunzip(data)
    out = Converted()
    raw: list[bytes] | None = None  # the original lines, when decoding changed them
    try:
        lines = text.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raw = text.split(b"\n")
        lines = [line.decode("utf-8", "replace") for line in raw]
    if lines and not lines[-1]:
        lines.pop()
    encode = RowEncoder()
    downloads, simple, unprocessed = out.downloads, out.simple, out.unprocessed
    earliest = "~"  # sorts after every timestamp
    ignored = 0
    for index, line in enumerate(lines):
        try:
            row = parse(line)
        except UnprocessableLine:
            unprocessed.append((line.encode() if raw is None else raw[index]) + b"\n")
            continue
        if row is None:
            ignored += 1
            continue
        timestamp = row["timestamp"]
        if timestamp < earliest:
            earliest = timestamp
        (downloads if "file" in row else simple).append(encode(row))
    out.earliest = None if earliest == "~" else earliest
    out.counts = Counts(len(downloads) + len(simple), ignored, len(unprocessed))
    return out
