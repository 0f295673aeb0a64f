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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, cast

import orjson

from pythonhosted.linehaul.events import UnprocessableLine, parse

GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Counts:
    """What became of a batch's lines."""

    rows: int = 0
    ignored: int = 0
    unprocessable: int = 0


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
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
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
            write_row(dumps(row, option=newline))
    return counts
