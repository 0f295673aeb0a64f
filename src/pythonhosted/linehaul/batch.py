"""A log object -> NDJSON rows per table and the lines that cannot be rows, streamed, in parts.

Shared by ``pythonhosted linehaul parse`` and the ingest worker. Lines are split on ``\\n``
only and decoded as UTF-8 with ``errors="replace"``: a stray non-UTF-8 byte (a client's user
agent, usually) becomes U+FFFD and the event still counts, and every row is valid UTF-8, which
BigQuery's NDJSON loader requires. (The reference decodes strictly and sends such a line to
"unprocessed".) Unprocessable lines are passed on as the original bytes; blank lines (nothing
but spaces, tabs and CRs) are counted and dropped; lines longer than the maximum line length
are cut (:mod:`.lines`).

Ingest streams (:class:`ObjectConverter`): compressed chunks in, inflated a window at a time
(:mod:`.gunzip`), cut into blocks of whole lines, converted block by block (:mod:`.columns`),
and handed out in parts of about :data:`PART_BYTES` of results, so memory is bounded by the
window, the longest line and one part, whatever the object's size. Parts end at window
boundaries, which depend on the decompressed text only: a retry cuts an object into the same
parts with the same contents.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import BinaryIO

import orjson

from pythonhosted.linehaul import gunzip
from pythonhosted.linehaul.columns import object_tables, valid_utf8
from pythonhosted.linehaul.events import (
    SERVED_PREFIX,
    Row,
    UnprocessableLine,
    parse,
    parse_served,
)
from pythonhosted.linehaul.gunzip import GZIP_MAGIC, CorruptBatch, Damage, Inflater
from pythonhosted.linehaul.lines import LineCutter
from pythonhosted.linehaul.useragents import entry_size

DEFAULT_MAX_LINE = 64 << 10
"""Default of ``linehaul.max_line_length``: real CDN log lines are below 4 KB."""
BLOCK_SIZE = gunzip.WINDOW
"""Decompressed bytes per window (a block is a window's whole lines); tests make it small."""
PART_BYTES = 64 << 20
"""Results (rows and unprocessable lines) per part, about: a part ends at the first window
boundary after this much. Part of the result layout: changing it while objects are in flight
would cut a retried object differently from its first attempt."""
READ_SIZE = 1 << 20
_ENCODER_SIZE = 4096
_ENCODER_BYTES = 16 << 20
_BLANKS = b" \t\r"
_NOT_EMPTY = re.compile(rb"[^\n]+")


@dataclass
class Counts:
    """What became of a batch's lines."""

    rows: int = 0
    ignored: int = 0
    unprocessable: int = 0
    blank: int = 0
    too_long: int = 0
    served: int = 0  # served lines that went with the download lines after them

    def add(self, other: Counts) -> None:
        for name in (item.name for item in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def lines(self) -> int:
        """Every line counted."""
        return sum(getattr(self, item.name) for item in fields(self))

    def extras(self) -> str:
        """``, N blank, M too long`` for those that happened, for summary lines (served
        lines are part of their download events, not news)."""
        found = ((self.blank, "blank"), (self.too_long, "too long"))
        return "".join(f", {count} {label}" for count, label in found if count)


@dataclass(frozen=True)
class Part:
    """Results of consecutive lines of one object: parts are numbered from 1."""

    number: int
    downloads: bytes
    simple: bytes
    unprocessed: bytes
    download_rows: int
    simple_rows: int
    earliest: str | None  # the earliest row timestamp, as written in rows


class LineParser:
    """The per-line path: each line through :func:`.events.parse`, ``served`` lines paired
    with the download lines after them (the rules in :mod:`.events`), rows to ``on_row`` and
    unprocessable lines (newline-terminated) to ``on_unprocessed``, counted in ``counts``.

    :meth:`line` takes every line in order (``linehaul parse``); :meth:`event` takes a line
    that is not a served line with the served line before it, which a converter kept
    (ingest's fallback); :meth:`end` settles a served line left at the end.
    """

    def __init__(
        self,
        counts: Counts,
        on_row: Callable[[Row], object],
        on_unprocessed: Callable[[bytes], object],
    ) -> None:
        self.counts = counts
        self.on_row = on_row
        self.on_unprocessed = on_unprocessed
        self._served: bytes | None = None

    def line(self, line: bytes) -> None:
        if not line.strip(_BLANKS):
            self.counts.blank += 1  # a blank line does not part a served line from its event
            return
        if line.startswith(SERVED_PREFIX):
            self.end()
            try:
                parse_served(line.decode("utf-8", "replace"))
            except UnprocessableLine:
                self._unprocessable(line)
                return
            self._served = line
            return
        served, self._served = self._served, None
        self.event(line, served)

    def event(self, line: bytes, served: bytes | None) -> None:
        if not line.strip(_BLANKS):
            self.counts.blank += 1
            if served is not None:
                self._unprocessable(served)
            return
        response = None if served is None else parse_served(served.decode("utf-8", "replace"))
        try:
            row = parse(line.decode("utf-8", "replace"), response)
        except UnprocessableLine:
            if served is not None:
                self._unprocessable(served)
            self._unprocessable(line)
            return
        if served is not None:
            if row is not None and "file" not in row:  # a simple request takes no facts
                self._unprocessable(served)
            else:
                self.counts.served += 1
        if row is None:
            self.counts.ignored += 1
            return
        self.counts.rows += 1
        self.on_row(row)

    def end(self) -> None:
        """A served line still waiting for its event is unprocessable."""
        if self._served is not None:
            self._unprocessable(self._served)
            self._served = None

    def _unprocessable(self, line: bytes) -> None:
        self.counts.unprocessable += 1
        self.on_unprocessed(line + b"\n")


class _PartTables:
    """The results of the part under way: the tables rows go to (:mod:`.columns`), and the
    part's row count and earliest row, which the per-line parser's rows add to too.

    Apart from :class:`ObjectConverter` so that nothing refers back to the converter: the
    per-line parser calls these methods, and if it called the converter's own, converter and
    parser would form a reference cycle, which only the cyclic garbage collector frees. Each
    object's converter then outlived its object until a collection ran, with its C tables,
    and a pass over many small objects held hundreds of them (megabytes each).
    """

    def __init__(self) -> None:
        self.tables = object_tables()
        self.number = 0  # of the last part handed out
        self.rows = 0
        self.earliest = "~"  # sorts after every timestamp

    def add_converted(self, rows: int, earliest: str | None) -> None:
        self.rows += rows
        if earliest is not None and earliest < self.earliest:
            self.earliest = earliest

    def add_unprocessed(self, line: bytes) -> None:
        self.tables.append(b"", b"", line)

    def add_row(self, row: Row) -> None:
        """A row of a line the converter left to the per-line parser."""
        self.add_converted(1, row["timestamp"])
        row_json = orjson.dumps(row) + b"\n"
        if "file" in row:
            self.tables.append(row_json, b"", b"")
        else:
            self.tables.append(b"", row_json, b"")

    def part(self) -> Part:
        """The part under way; the next one starts empty."""
        downloads, simple, unprocessed = self.tables.finish()
        simple_rows = simple.count(b"\n")  # the smaller table; a row is a line
        self.number += 1
        part = Part(
            self.number,
            downloads,
            simple,
            unprocessed,
            self.rows - simple_rows,
            simple_rows,
            None if self.earliest == "~" else self.earliest,
        )
        self.rows, self.earliest = 0, "~"
        return part


class ObjectConverter:
    """One log object, gzip'd: :meth:`feed` it its bytes in order (chunks of any size), then
    :meth:`finish`. ``feed`` gives the parts it completes one at a time, as they fill (a
    small chunk may inflate to gigabytes of rows: write each part before taking the next);
    ``finish`` gives the last one.

    Damage ends the object where it is found: the lines before it are converted, the line it
    cut is dropped (``dropped_lines``), and :attr:`damage` says where and why. Lines longer
    than ``max_line`` bytes are counted in ``counts.too_long``, the start of the first few
    kept in :attr:`samples`.

    What it holds grows with what it has been given (the window under way, the part under
    way), not with a fixed size per object: a worker has many small objects under way at
    once.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._inflater = Inflater(BLOCK_SIZE)
        self._cutter = LineCutter(max_line)
        self._part = _PartTables()
        self.counts = Counts()
        self._lines = LineParser(self.counts, self._part.add_row, self._part.add_unprocessed)

    @property
    def damage(self) -> Damage | None:
        return self._inflater.damage

    @property
    def samples(self) -> list[bytes]:
        return self._cutter.samples

    @property
    def dropped_lines(self) -> int:
        return self._cutter.dropped

    @property
    def read(self) -> int:
        """Compressed bytes read so far."""
        return self._inflater.offset

    def feed(self, chunk: bytes) -> Iterator[Part]:
        for window in self._inflater.feed(chunk):
            self._add_blocks(self._cutter.cut(window))
            if self._part.tables.pending() >= PART_BYTES:
                yield self._part.part()

    def finish(self) -> Part:
        """The last part (possibly empty)."""
        for window in self._inflater.finish():
            self._add_blocks(self._cutter.cut(window))
        self._add_blocks(self._cutter.finish(complete=self.damage is None))
        self.counts.unprocessable += self._part.tables.flush()
        return self._part.part()

    def _add_blocks(self, blocks: list[bytes]) -> None:
        for block in blocks:
            rows, ignored, blank, unprocessable, served, earliest = self._part.tables.convert(
                block, self._lines.event, valid_utf8(block)
            )
            counts = self.counts
            counts.rows += rows
            counts.ignored += ignored
            counts.blank += blank
            counts.unprocessable += unprocessable
            counts.served += served
            self._part.add_converted(rows, earliest)
        self.counts.too_long = self._cutter.too_long


@dataclass
class Converted:
    """One whole log object's results, in memory: NDJSON per table, unprocessable lines."""

    downloads: bytes = b""
    simple: bytes = b""
    unprocessed: bytes = b""
    earliest: str | None = None
    counts: Counts = field(default_factory=Counts)
    samples: list[bytes] = field(default_factory=list)


def convert(data: bytes, max_line: int = DEFAULT_MAX_LINE) -> Converted:
    """Gunzip and convert one whole log object in memory, its parts joined (tests and
    benchmarks; ingest streams). Raises :class:`CorruptBatch` when ``data`` is not a complete
    gzip stream."""
    converter = ObjectConverter(max_line)
    parts = [*converter.feed(data), converter.finish()]
    if converter.damage is not None:
        raise CorruptBatch(converter.damage.reason)
    earliest = min((part.earliest for part in parts if part.earliest), default=None)
    return Converted(
        b"".join(part.downloads for part in parts),
        b"".join(part.simple for part in parts),
        b"".join(part.unprocessed for part in parts),
        earliest,
        converter.counts,
        converter.samples,
    )


# -- `linehaul parse`: a stream's lines, one at a time -------------------------------------


class LogLines:
    """The lines of a log stream, gzip'd (told by its magic bytes) or plain, without their
    newlines; read :data:`READ_SIZE` bytes at a time, lines longer than ``max_line`` cut.

    Iterating stops at damage; :attr:`damage` then says where and why, and the lines before
    it have all been given out. Empty lines are not given out, only counted in :attr:`empty`
    (:attr:`lines` counts them too): a stream of nothing but newlines (a hostile or broken
    log) is skipped at a few nanoseconds a line instead of a parser's call each.
    """

    def __init__(self, stream: BinaryIO, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._stream = stream
        self.cutter = LineCutter(max_line)
        self.damage: Damage | None = None
        self.lines = 0
        self.empty = 0

    def __iter__(self) -> Iterator[bytes]:
        chunk = self._stream.read(READ_SIZE)
        inflater = Inflater() if chunk[:2] == GZIP_MAGIC else None
        while chunk:
            windows = iter([[chunk]]) if inflater is None else inflater.feed(chunk)
            yield from self._lines(windows)
            if inflater is not None and inflater.damage is not None:
                break
            chunk = self._stream.read(READ_SIZE)
        if inflater is not None:
            yield from self._lines(inflater.finish())
            self.damage = inflater.damage
        for block in self.cutter.finish(complete=self.damage is None):
            yield from self._split(block)

    def _lines(self, windows: Iterator[list[bytes]]) -> Iterator[bytes]:
        for window in windows:
            for block in self.cutter.cut(window):
                yield from self._split(block)

    def _split(self, block: bytes) -> list[bytes]:
        if b"\n\n" in block:  # empty lines: leave them out in C (a plain split is faster)
            lines = _NOT_EMPTY.findall(block)
            count = block.count(b"\n")
            self.empty += count - len(lines)
        else:
            lines = block.split(b"\n")
            lines.pop()  # after the last newline
            count = len(lines)
        self.lines += count
        return lines


class RowEncoder:
    """A row -> one NDJSON line, serialising each shared ``details`` record only once.

    Rows with the same user agent share one details record (a dict subclass, which orjson
    serialises on a slow path); caching its JSON per record makes encoding about 3x faster.
    The cache keys on ``id`` and holds the record itself, so an id cannot be reused while it
    is cached; it is cleared when it holds :data:`_ENCODER_SIZE` records or
    :data:`_ENCODER_BYTES` of records and JSON.
    """

    def __init__(self) -> None:
        self._details: dict[int, tuple[object, bytes]] = {}
        self._bytes = 0

    def __call__(self, row: Row) -> bytes:
        details = row.pop("details")
        cached = self._details.get(id(details))
        if cached is None:
            cached = (details, b',"details":' + orjson.dumps(details) + b"}\n")
            weight = entry_size("", details) + sys.getsizeof(cached[1])
            if len(self._details) >= _ENCODER_SIZE or self._bytes + weight > _ENCODER_BYTES:
                self._details.clear()
                self._bytes = 0
            self._details[id(details)] = cached
            self._bytes += weight
        row_json = orjson.dumps(row)
        row["details"] = details
        return row_json[:-1] + cached[1]


def parse_lines(
    lines: Iterable[bytes],
    write_row: Callable[[bytes], object],
    write_unprocessed: Callable[[bytes], object] | None = None,
) -> Counts:
    """Parse every line (without its newline) in order: each row to ``write_row`` as one JSON
    line, each unprocessable line (newline-terminated) to ``write_unprocessed``."""
    counts = Counts()
    encode = RowEncoder()
    parser = LineParser(
        counts,
        lambda row: write_row(encode(row)),
        write_unprocessed if write_unprocessed is not None else lambda line: None,
    )
    for line in lines:
        parser.line(line)
    parser.end()
    return counts
