"""Damaged log objects, truncated and bit-flipped real gzip files at several sizes.

``linehaul parse`` writes the rows of the lines before the damage, then one line on stderr
and exit status 1. Ingest loads the rows of the lines before the damage, drops the line it
cut, moves the object to ``corrupt/`` and reports what was lost. The oracle for "the lines
before the damage" is the standard library's zlib: every complete line it can decode from
the damaged bytes.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from pythonhosted.linehaul import UnprocessableLine, parse
from pythonhosted.linehaul.cli import linehaul
from pythonhosted.linehaul.ingest import IngestSummary, ingest_once
from pythonhosted.storage import open_store
from support.linehaul_data import UV, download_line, log_key, simple_line

SIZES = [1, 300, 20_000]  # lines; 20,000 inflate to ~6 MB, several windows
FIELDS = {"timestamp", "url", "project", "tls_protocol", "tls_cipher", "country_code", "details"}


def _text(lines: int) -> bytes:
    made = [
        simple_line(n) if n % 5 == 4 else download_line(n, agent=UV if n % 3 else "curl/8")
        for n in range(lines)
    ]
    return ("\n".join(made) + "\n").encode()


def _readable(data: bytes) -> bytes:
    """What zlib decodes of ``data``, member after member, up to the damage."""
    out = []
    while data:
        inflate = zlib.decompressobj(31)
        try:
            out.append(inflate.decompress(data))
        except zlib.error:
            break
        if not inflate.eof:
            break
        data = inflate.unused_data.lstrip(b"\x00")
    return b"".join(out)


def _rows(text: bytes) -> list[Any]:
    """The rows of the complete lines of ``text``, as loaded JSON."""
    rows = []
    for line in text.split(b"\n")[:-1]:
        try:
            row = parse(line.decode("utf-8", "replace"))
        except UnprocessableLine:
            continue
        if row is not None:
            rows.append(orjson.loads(orjson.dumps(row)))
    return rows


def _cuts(size: int) -> list[int]:
    """Where to truncate: inside the header, a tenth, half, most, inside the trailer."""
    return sorted({5, size // 10, size // 2, size - 40, size - 4} & set(range(1, size)))


def _parse(path: Path) -> Any:
    return CliRunner().invoke(linehaul, ["parse", str(path)])


@pytest.mark.parametrize("lines", SIZES)
def test_parse_stops_at_a_truncation_with_one_line(tmp_path: Path, lines: int) -> None:
    data = gzip.compress(_text(lines), 6)
    for cut in _cuts(len(data)):
        path = tmp_path / f"cut-{cut}.log.gz"
        path.write_bytes(data[:cut])
        result = _parse(path)
        readable = _readable(data[:cut])
        complete = readable.count(b"\n")
        assert result.exit_code == 1, (cut, result.output)
        assert result.stderr == (
            f"Error: {path} is damaged at compressed byte {cut} (compressed data ends early): "
            f"stopped after its first {complete} lines\n"
        )
        assert [orjson.loads(row) for row in result.stdout_bytes.splitlines()] == _rows(readable)


@pytest.mark.parametrize("lines", SIZES)
def test_parse_of_flipped_bits(tmp_path: Path, lines: int) -> None:
    """A flipped bit in the compressed body or the trailer: either the stream still decodes
    to the same text (a bit deflate ignores), or the command stops at the damage with one
    line; what it wrote before is whole rows."""
    data = gzip.compress(_text(lines), 6)
    expected = _parse_text(tmp_path, _text(lines))
    rng = random.Random(lines)
    stopped = 0
    for spot in [10, len(data) // 2, len(data) - 9, len(data) - 5, len(data) - 1]:
        flipped = bytearray(data)
        flipped[spot] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip-{spot}.log.gz"
        path.write_bytes(flipped)
        result = _parse(path)
        if result.exit_code == 0:
            assert result.stdout_bytes == expected
            continue
        stopped += 1
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error: {path} is damaged at compressed byte ")
        assert result.stderr.count("\n") == 1
        for row in result.stdout_bytes.splitlines():
            assert set(orjson.loads(row)) >= FIELDS
    assert stopped >= 3  # the CRC and size in the trailer are always checked


def _parse_text(tmp_path: Path, text: bytes) -> bytes:
    path = tmp_path / "plain.log"
    path.write_bytes(text)
    result = _parse(path)
    assert result.exit_code == 0
    stdout: bytes = result.stdout_bytes
    return stdout


def test_parse_of_damage_between_members(tmp_path: Path) -> None:
    """Bytes that are not gzip after a whole member: its lines are written, then the error
    names the exact byte."""
    first = gzip.compress(_text(50))
    path = tmp_path / "members.log.gz"
    path.write_bytes(first + b"\x00\x00garbage" + gzip.compress(_text(10)))
    result = _parse(path)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {path} is damaged at compressed byte {len(first) + 2} (not a gzip stream): "
        "stopped after its first 50 lines\n"
    )
    assert len(result.stdout_bytes.splitlines()) == len(_rows(_text(50)))


def _ingest(tmp_path: Path, data: bytes) -> tuple[IngestSummary, list[Any], dict[str, bytes]]:
    """Ingest one object: the summary, the rows loaded, and what is left in the log store."""
    logs = open_store(f"file://{tmp_path}/logs")
    results = open_store(f"file://{tmp_path}/results")

    async def run() -> tuple[IngestSummary, list[Any], dict[str, bytes]]:
        await logs.put(log_key(0), data)
        summary = await ingest_once(logs, results, lease_timeout=60.0)
        rows = []
        for item in await results.list("processed/"):
            rows += [orjson.loads(row) for row in (await results.get_bytes(item.key)).splitlines()]
        left = {item.key: await logs.get_bytes(item.key) for item in await logs.list()}
        return summary, rows, left

    return asyncio.run(run())


def _key(row: Any) -> bytes:
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def _by_url(rows: list[Any]) -> list[Any]:
    return sorted(rows, key=lambda row: (row["url"], "file" in row))


@pytest.mark.parametrize("lines", SIZES)
def test_ingest_loads_the_lines_before_a_truncation(tmp_path: Path, lines: int) -> None:
    data = gzip.compress(_text(lines), 6)
    for cut in _cuts(len(data)):
        damaged = data[:cut]
        summary, rows, left = _ingest(tmp_path / str(cut), damaged)
        readable = _readable(damaged)
        cut_line = 0 if readable.endswith(b"\n") or not readable else 1
        assert (summary.objects, summary.corrupt, summary.busy) == (0, 1, 0)
        assert (summary.lost, summary.unreadable) == (cut_line, 0)  # all of it was read
        assert summary.counts.rows == len(rows)
        assert _by_url(rows) == _by_url(_rows(readable))
        assert left == {f"corrupt/{log_key(0)}": damaged}  # moved aside, no lease left


def test_ingest_of_damage_between_members_reports_the_bytes_left(tmp_path: Path) -> None:
    first = gzip.compress(_text(3000))
    second = gzip.compress(_text(7))
    data = first + b"garbage" + second
    summary, rows, left = _ingest(tmp_path, data)
    assert (summary.corrupt, summary.lost, summary.unreadable) == (1, 0, len(second) + 7)
    assert _by_url(rows) == _by_url(_rows(_text(3000)))
    unreadable = len(second) + 7
    assert summary.line().endswith(
        f"1 corrupt (0 lines cut, {unreadable} bytes unreadable), 0 busy"
    )
    assert list(left) == [f"corrupt/{log_key(0)}"]


@pytest.mark.parametrize("lines", SIZES)
def test_ingest_of_flipped_bits(tmp_path: Path, lines: int) -> None:
    """A flipped bit in the trailer (CRC, size): the text decoded before the check is the
    object's own, so the rows loaded are some of the object's rows, and it is moved aside.
    In the body: moved aside (or, for a bit deflate ignores, ingested whole), every row
    loaded a whole row."""
    data = gzip.compress(_text(lines), 6)
    every = _by_url(_rows(_text(lines)))
    rng = random.Random(lines)
    moved = 0
    for spot in [len(data) // 2, len(data) - 8, len(data) - 6, len(data) - 3]:
        flipped = bytearray(data)
        flipped[spot] ^= 1 << rng.randrange(8)
        summary, rows, left = _ingest(tmp_path / str(spot), bytes(flipped))
        if summary.objects:
            assert _by_url(rows) == every and left == {}
            continue
        assert summary.corrupt == 1
        moved += 1
        assert list(left) == [f"corrupt/{log_key(0)}"]
        for row in rows:
            assert set(row) >= FIELDS
        if spot >= len(data) - 8:
            assert {_key(row) for row in rows} <= {_key(row) for row in every}
    assert moved >= 3  # the trailer is always checked
