"""Hostile log objects: small gzips that inflate to a gigabyte of one line or of newlines,
floods of junk lines. Ingest runs as ``pythonhosted linehaul ingest --once`` in its own
process, which reports its peak memory (``VmHWM``, its own address space's high-water mark:
``wait4``'s ``ru_maxrss`` would count the pytest process it was forked from, up to a GB);
counts and result files are exact.

The objects are built streaming with ISA-L (a gigabyte of one byte is ~1 MB gzip'd), never
whole in memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from isal import isal_zlib

from pythonhosted.linehaul import columns
from pythonhosted.linehaul.batch import Counts, convert
from pythonhosted.linehaul.lines import SAMPLE_BYTES
from support.linehaul_data import download_line, log_key, simple_line
from support.processes import spawn

GIB = 1 << 30
MEMORY_BOUND_MB = 200  # an empty object peaks at ~80 MB, these at ~85 MB
# `pythonhosted ARGS...` that writes its peak RSS to stderr last; with "Python" first, with
# the Python converter, as an install without a compiler has it.
MEASURED = """
import os, sys
if sys.argv.pop(1) == "Python":
    from pythonhosted.linehaul import columns
    columns._columns = None
from pythonhosted.cli import main
try:
    main()
    code = 0
except SystemExit as exit_:
    code = exit_.code if isinstance(exit_.code, int) else 1
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
sys.stderr.write(peak[0])
sys.stderr.flush()
os._exit(code)
"""


def _gzip_stream(pieces: Iterable[bytes]) -> bytes:
    """One gzip member of ``pieces``, compressed as they come."""
    compress = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    return b"".join([*(compress.compress(piece) for piece in pieces), compress.flush()])


def _repeat(byte: bytes, size: int) -> Iterable[bytes]:
    chunk = byte * (1 << 20)
    for _ in range(size >> 20):
        yield chunk


def _ingest_process(tmp_path: Path, data: bytes, converter: str) -> tuple[str, float]:
    """``linehaul ingest --once`` over one log object: its summary line and its peak RSS in
    MB. Killed (with its process group) if it has not finished in two minutes."""
    logs, results = tmp_path / "logs", tmp_path / "results"
    target = logs / log_key(0)
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    argv = [sys.executable, "-c", MEASURED, converter, "linehaul", "ingest", "--once"]
    argv += ["--logs", f"file://{logs}", "--results", f"file://{results}"]
    env = {**os.environ, "PYTHONHOSTED_DATA_DIR": str(tmp_path / "data")}
    with tempfile.TemporaryFile() as stderr:
        process = spawn(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 120
            while process.poll() is None:
                assert time.monotonic() < deadline, "ingest did not finish in two minutes"
                time.sleep(0.05)
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        stderr.seek(0)
        text = stderr.read().decode()
    assert process.returncode == 0, text
    *_, summary, peak = text.splitlines()
    assert peak.startswith("VmHWM:") and peak.endswith(" kB")
    return summary, int(peak.split()[1]) / 1024


def _results(tmp_path: Path) -> dict[str, bytes]:
    root = tmp_path / "results"
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and ".meta" not in path.parts
    }


def _name() -> str:
    return log_key(0).rsplit("/", 1)[1].removesuffix(".log.gz")


@pytest.mark.parametrize(("converter", "size"), [("C", GIB), ("Python", 256 << 20)])
def test_a_line_of_a_gigabyte_without_a_newline(tmp_path: Path, converter: str, size: int) -> None:
    """The issue's object: two good lines, then one line of ``size`` bytes that never ends
    (a gigabyte gzip's to ~1 MB). It is counted and cut, its first 4 kB kept aside; the rows
    load; memory stays at a few windows."""
    head = (download_line(1) + "\n" + simple_line(2) + "\n").encode()
    data = _gzip_stream([head, *_repeat(b"x", size)])
    assert len(data) < 2 << 20
    summary, peak = _ingest_process(tmp_path, data, converter)
    assert summary == (
        "linehaul ingest: 1 objects, 2 rows, 0 ignored, 0 unprocessable, 1 too long, "
        f"0 corrupt, 0 busy ({converter} converter)"
    )
    assert peak < MEMORY_BOUND_MB
    found = _results(tmp_path)
    name = _name()
    assert sorted(found) == [
        f"processed/20210107/downloads-{name}.json",
        f"processed/20210107/simple-{name}.json",
        f"unprocessed/20210107/too-long/{name}.txt",
    ]
    assert found[f"unprocessed/20210107/too-long/{name}.txt"] == b"x" * SAMPLE_BYTES + b"\n"


@pytest.mark.parametrize(("converter", "size"), [("C", GIB), ("Python", GIB)])
def test_a_gigabyte_of_newlines(tmp_path: Path, converter: str, size: int) -> None:
    """Blank lines are counted on the converters' fast paths: a billion of them take
    seconds, are written nowhere, and the row among them loads."""
    row = (download_line(1) + "\n").encode()
    data = _gzip_stream([*_repeat(b"\n", size // 2), row, *_repeat(b"\n", size // 2)])
    summary, peak = _ingest_process(tmp_path, data, converter)
    assert summary == (
        f"linehaul ingest: 1 objects, 1 rows, 0 ignored, 0 unprocessable, {size} blank, "
        f"0 corrupt, 0 busy ({converter} converter)"
    )
    assert peak < MEMORY_BOUND_MB
    assert sorted(_results(tmp_path)) == [f"processed/20210107/downloads-{_name()}.json"]


@pytest.fixture(params=["native", "python"])
def converter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(columns, "_columns", None)
    return str(request.param)


def test_many_long_lines_keep_a_bounded_sample(converter: str) -> None:
    """2,000 lines of 70 kB between rows, inside windows and across their boundaries: all
    counted, each row loads, and only the first 16 lines' first 4 kB are kept."""
    long_line = b"download|" + b"y" * 70_000 + b"\n"
    row = (download_line(7) + "\n").encode()
    data = _gzip_stream([row + long_line] * 2_000 + [row])
    converted = convert(data)
    assert converted.counts == Counts(rows=2_001, too_long=2_000)
    assert converted.samples == [long_line[:SAMPLE_BYTES]] * 16


def test_a_flood_of_junk_lines_is_unprocessed_verbatim(converter: str) -> None:
    """Two million short lines the parser would reject (fewer than ten fields, an unknown
    kind), blank lines of spaces between them: kept verbatim, counted exactly."""
    junk = b"x\nno|bars|here\n|||||||||\n \t\r\n"
    data = _gzip_stream([junk * 500_000])
    converted = convert(data)
    assert converted.counts == Counts(unprocessable=1_500_000, blank=500_000)
    assert converted.unprocessed == b"x\nno|bars|here\n|||||||||\n" * 500_000
