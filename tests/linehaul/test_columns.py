"""The column-at-a-time converter against the per-line parser: byte-identical results.

The oracle is the straightforward path: split the object into lines, cut those over the
maximum length, count blank ones, ``parse`` the others (UTF-8 with U+FFFD), ``orjson.dumps``
each row. ``convert`` must give exactly the same bytes per table, the same unprocessed lines,
counts, samples of long lines and earliest timestamp, on the differential corpus (junk,
blanks, tabs, controls, wrong field counts, 1 MB lines), the benchmark corpus, the real
batches, and those corpora with random damage (blank lines, long lines among it), at several
block sizes and line limits (so window boundaries, lines across them, the fallback and
single-line blocks are all exercised). Every test runs twice: with the C converter
(``_columns.c``, which CI builds: its absence fails the native runs) and with the Python one
it stands in for.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import random
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from pythonhosted.linehaul import UnprocessableLine, batch, columns, lines, parse
from pythonhosted.linehaul.batch import DEFAULT_MAX_LINE, Converted, convert
from pythonhosted.linehaul.events import parse_served
from support.linehaul_data import REAL

# On one test worker (`make test` distributes by group), in order: the corpora are made once
# and a text's tests follow one another, so its oracle answer is reused (expected_for).
pytestmark = pytest.mark.xdist_group("linehaul_columns")
HERE = Path(__file__).parent
DAMAGE = [
    *("|", "\t", "\r", "\n", " ", '"', "\\", "\x00", "\x7f", "é", "(null)", "\n\n", "download|"),
    *("\n \n", "\n\r\n", "\n\t \r\n", "\n" * 5, "simple", "x|" * 9),  # blank lines; fields
    "y" * 3000,  # a long line when the limit is small
    "z" * (DEFAULT_MAX_LINE + 1),  # a line over the default limit
    "served|206|10|1|5|||||\n",  # a served line before whatever follows
    "\nserved|200|7|0|0|||||",
    "served|",
    "served|2o6|10|1|5|||||\n",  # one that cannot be read
]


@pytest.fixture(autouse=True, params=["native", "python"])
def converter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "native":
        assert columns._columns is not None, "the C converter was not built"
    else:
        monkeypatch.setattr(columns, "_columns", None)
    return str(request.param)


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_corpus_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def oracle(text: bytes, max_line: int = DEFAULT_MAX_LINE) -> Converted:
    """What converting means, one line at a time; a served line goes with the next line
    that is neither blank nor too long (its facts into a download row, along with an
    ignored event, to the unprocessed lines before anything else or at the end)."""
    all_lines = text.split(b"\n")
    if all_lines and not all_lines[-1]:
        all_lines.pop()
    out = Converted()
    downloads, simple, unprocessed = [], [], []
    timestamps = []
    served: bytes | None = None
    for line in all_lines:
        if len(line) > max_line:
            out.counts.too_long += 1
            if len(out.samples) < lines.SAMPLES:
                out.samples.append(line[: min(lines.SAMPLE_BYTES, max_line)])
            continue
        if not line.strip(b" \t\r"):
            out.counts.blank += 1
            continue
        before, served = served, None
        if line.startswith(b"served|"):
            if before is not None:
                unprocessed.append(before + b"\n")
            try:
                parse_served(line.decode("utf-8", "replace"))
                served = line
            except UnprocessableLine:
                unprocessed.append(line + b"\n")
            continue
        response = None if before is None else parse_served(before.decode("utf-8", "replace"))
        try:
            row = parse(line.decode("utf-8", "replace"), response)
        except UnprocessableLine:
            if before is not None:
                unprocessed.append(before + b"\n")
            unprocessed.append(line + b"\n")
            continue
        if before is not None and row is not None and "file" not in row:
            unprocessed.append(before + b"\n")
        elif before is not None:
            out.counts.served += 1
        if row is None:
            out.counts.ignored += 1
            continue
        timestamps.append(row["timestamp"])
        (downloads if "file" in row else simple).append(orjson.dumps(row) + b"\n")
    if served is not None:
        unprocessed.append(served + b"\n")
    out.downloads, out.simple = b"".join(downloads), b"".join(simple)
    out.unprocessed = b"".join(unprocessed)
    out.counts.rows = len(downloads) + len(simple)
    out.counts.unprocessable = len(unprocessed)
    out.earliest = min(timestamps, default=None)
    return out


@functools.lru_cache(maxsize=8)
def expected_for(text: bytes, max_line: int) -> Converted:
    """The oracle's answer for ``text``, worked out once: most texts are checked with both
    converters at three block sizes, and the oracle takes about as long as a converter.
    Eight answers: a test's texts (up to six) stay while its parameters go round."""
    return oracle(text, max_line)


@pytest.fixture(scope="module", autouse=True)
def _forget_expected() -> Iterator[None]:
    """The answers (up to a few hundred MB) are let go when the module's tests are done."""
    yield
    expected_for.cache_clear()


def check(text: bytes, max_line: int = DEFAULT_MAX_LINE) -> None:
    ours = convert(gzip.compress(text, 1), max_line)
    expected = expected_for(text, max_line)
    assert ours.counts == expected.counts
    assert ours.earliest == expected.earliest
    assert ours.samples == expected.samples
    assert ours.unprocessed == expected.unprocessed
    assert ours.downloads == expected.downloads
    assert ours.simple == expected.simple


def damaged(lines: list[str], rng: random.Random, share: float) -> list[str]:
    out = []
    for line in lines:
        if rng.random() < share:
            spot = rng.randrange(0, len(line) + 1)
            line = line[:spot] + rng.choice(DAMAGE) + line[spot:]
        out.append(line)
    return out


@pytest.fixture(scope="module")
def differential() -> list[str]:
    return [text for _, text in _module(HERE / "test_differential.py").corpus()]


@pytest.fixture(scope="module")
def bench() -> list[str]:
    corpus: list[str] = _module(HERE.parent.parent / "bench" / "linehaul.py").corpus(20_000, 3)
    return corpus


@pytest.fixture(scope="module")
def edge_corpus(bench: list[str]) -> list[str]:
    """The benchmark corpus as our files edge writes it: most download lines after a served
    line of their response's facts (whole files, suffix reads, ranges elsewhere)."""
    rng = random.Random(5)
    out = []
    for line in bench:
        if line.startswith("download|") and rng.random() < 0.8:
            size = rng.randrange(1, 10**7)
            start = rng.choice([0, 0, 0, rng.randrange(size)])
            status = 200 if start == 0 and rng.random() < 0.7 else 206
            sent = rng.randrange(size + 1)
            out.append(f"served|{status}|{sent}|{int(status == 206)}|{start}|||||")
        out.append(line)
    return out


@pytest.fixture(params=[batch.BLOCK_SIZE, 4096, 300])
def block_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    size: int = request.param
    monkeypatch.setattr(batch, "BLOCK_SIZE", size)
    return size


def test_differential_corpus(differential: list[str], block_size: int) -> None:
    check("\n".join(differential).encode() + b"\n")


def test_benchmark_corpus(bench: list[str], block_size: int) -> None:
    check("\n".join(bench).encode() + b"\n")


def test_damaged_corpora(bench: list[str], differential: list[str]) -> None:
    rng = random.Random(7)
    for share in (0.001, 0.01, 0.2):
        check("\n".join(damaged(bench, rng, share)).encode())  # no final newline either
        check("\n".join(damaged(differential[:5000], rng, share)).encode() + b"\n")


@pytest.mark.parametrize("max_line", [1024, 2500, 70_000])
def test_damaged_corpora_with_line_limits(bench: list[str], block_size: int, max_line: int) -> None:
    """Long lines at every limit: inside blocks, across window boundaries, spanning many
    windows (the small block sizes), at the end without a newline."""
    rng = random.Random(max_line)
    text = "\n".join(damaged(bench[:3000], rng, 0.05)).encode()
    check(text, max_line)
    check(text + b"q" * (3 * max_line), max_line)  # the last line is too long


def test_served_lines_go_with_their_downloads(edge_corpus: list[str], block_size: int) -> None:
    """Served lines among the rows, many at block (and window) boundaries at the small block
    sizes: carried over to the download line that starts the next block."""
    check(("\n".join(edge_corpus[:6000]) + "\n").encode())


def test_damaged_served_lines(edge_corpus: list[str], block_size: int) -> None:
    rng = random.Random(17)
    for _ in range(3):
        text = "\n".join(damaged(edge_corpus[:3000], rng, 0.05)).encode()
        check(text)
        check(text + b"\nserved|200|1|0|0|||||\n")  # one left waiting at the end


@pytest.mark.parametrize(
    "text",
    [
        b"served|200|1|0|0|||||\n",
        b"served|200|1|0|0|||||\nserved|206|2|1|9|||||\n",
        b"served|200|1|0|0|||||\n\n \r\n",
        b"served|200|01|0|0|||||\n",  # a leading zero
        b"served|200|1|2|0|||||\n",  # a range flag that is neither 0 nor 1
        b"served|99|1|0|0|||||\n",
        b"served|200|1|0|0||||||\n",  # eleven fields
        b"served|200|1|0|0||||\xff|\n",  # reserved fields are not read
        b"served|200|\xd9\xa1|0|0|||||\n",  # a digit, but not ASCII
        b"served |200|1|0|0|||||\n",
        b"served|200|1000000000000000000|0|0|||||\n",  # 19 digits
    ],
)
def test_odd_served_lines(text: bytes, bench: list[str]) -> None:
    download = (
        bench[0].encode() + b"\n" if bench[0].startswith("download|") else bench[1].encode() + b"\n"
    )
    check(text)
    check(text + download)
    check(download + text + download)


def test_blank_lines_take_no_fallback(bench: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank lines among rows are counted and dropped by the converters themselves: never
    one call of the per-line parser (a gigabyte of newlines would make a billion)."""
    calls: list[bytes] = []
    per_line = batch.LineParser.event

    def counted(self: batch.LineParser, line: bytes, served: bytes | None) -> None:
        calls.append(line)
        per_line(self, line, served)

    monkeypatch.setattr(batch.LineParser, "event", counted)
    blanks = ["", "  ", "\r", "\t \r", ""]
    text = "\n".join(line for row in bench[:2000] for line in (row, rng_blank(blanks, row)))
    check(text.encode() + b"\n\n\n")
    assert calls == []


def rng_blank(blanks: list[str], row: str) -> str:
    return blanks[len(row) % len(blanks)]


def test_real_batches(block_size: int) -> None:
    for path in REAL:
        check(gzip.decompress(path.read_bytes()))


def test_bytes_that_are_not_utf8(bench: list[str]) -> None:
    lines = [line.encode() for line in bench[:3000]]
    lines[5] = lines[5].replace(b"pip", b"p\xffp")
    lines[2000] = lines[2000][:40] + b"\xc3" + lines[2000][40:]
    check(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"\n",
        b"\n\n\n",
        b" \r\n\t\n",
        b"garbage",
        b"simple|a|b|c|d|e|f|g|h|i\n" * 3,
        b"a|b\n" + b"x" * (DEFAULT_MAX_LINE + 1),
        b"x" * DEFAULT_MAX_LINE + b"\n" + b"y" * (DEFAULT_MAX_LINE + 1) + b"\n",
    ],
)
def test_small_objects(text: bytes) -> None:
    check(text)


def test_gzip_members_and_padding(bench: list[str]) -> None:
    first = ("\n".join(bench[:100]) + "\n").encode()
    second = ("\n".join(bench[100:200]) + "\n").encode()
    data = gzip.compress(first) + b"\x00" * 8 + gzip.compress(second)
    assert convert(data).downloads == oracle(first + second).downloads


def test_more_distinct_values_than_the_c_tables_hold(bench: list[str]) -> None:
    """Every line its own agent, project and url: the C converter's per-field tables fill
    and start again many times over within one object."""
    lines = []
    for number, line in enumerate(bench[:20_000]):
        fields = line.split("|")
        if len(fields) == 10 and fields[0] == "download":
            fields[6] = f"project-{number}"
            fields[9] = fields[9].replace("pip/", f"pip/{number % 50}.", 1)
            line = "|".join(fields)
        lines.append(line)
    check("\n".join(lines).encode() + b"\n")


def _convert_block(tables: columns.Tables, block: bytes) -> tuple[object, ...]:
    """A block through ``tables``, lines it leaves to the per-line parser through an
    :class:`~.batch.ObjectConverter`'s: the counts, the earliest timestamp and the results."""
    parser = batch.ObjectConverter()
    parser._part.tables = tables
    rows, ignored, blank, unprocessable, served, earliest = tables.convert(
        block, parser._lines.event, columns.valid_utf8(block)
    )
    unprocessable += tables.flush()
    counts = parser.counts
    totals = (rows + counts.rows, ignored + counts.ignored, blank + counts.blank)
    earliest = min(filter(None, (earliest, parser._part.earliest)), default=None)
    served += counts.served
    return (*totals, unprocessable + counts.unprocessable, served, earliest, tables.finish())


def test_random_blocks_convert_in_c_as_in_python(converter: str, bench: list[str]) -> None:
    """Blocks of a few lines with random damage (blank lines, lines of too few fields or an
    odd kind, bytes that are not UTF-8 among it) through the C converter and through the
    Python one, with the per-line parser behind each: the same counts and results."""
    if converter == "python":
        pytest.skip("compares the C converter with the Python one")
    rng = random.Random(11)
    pieces = ["|", "\n", "/", " ", "download", "simple", '"', "\\", "\t", "\x7f", "(null)", "é"]
    pieces += ["\n\n", "\n \r\n", "\r", "xdownload", "simplex", "downl oad", "\udcff"]
    pieces += ["served|", "\nserved|200|1|0|0|||||\n", "|1|0|0|||||", "\nserved|206|1|x|0|||||"]
    served = ["served|200|5|0|0|||||", "served|206|16384|1|99|||||"]
    fast = 0
    for _ in range(3000):
        lines = []
        for _ in range(rng.randrange(1, 12)):
            line = rng.choice(bench)
            if line.startswith("download|") and rng.random() < 0.3:
                line = rng.choice(served) + "\n" + line
            if rng.random() < 0.3:
                spot = rng.randrange(len(line) + 1)
                line = line[:spot] + rng.choice(pieces) + line[spot + rng.randrange(3) :]
            lines.append(line + "\n")
        block = "".join(lines).encode("utf-8", "surrogateescape")
        native = _convert_block(columns.object_tables(), block)
        python = _convert_block(columns._PythonTables(), block)
        assert native == python
        fast += columns.valid_utf8(block) and columns.convert_block(block) is not None
    assert fast > 1000


def test_c_converter_lets_other_threads_run_while_it_converts(
    converter: str, edge_corpus: list[str]
) -> None:
    """The C converter releases the GIL over the lines it converts without Python objects,
    so another thread runs meanwhile: in ``serve`` ingest converts in a thread and every
    service's event loop (lease renewals too) waits for the GIL. The switch interval is made
    huge, so only a released GIL lets the main thread run while the worker converts; holding
    it, the converter left it to the worker's end (every call done)."""
    if converter == "python":
        pytest.skip("the Python converter holds the GIL as Python does")
    block = ("\n".join(edge_corpus[:4000]) + "\n").encode()
    tables = columns.object_tables()
    settled: list[bytes] = []

    def fallback(line: bytes, served: bytes | None) -> None:
        settled.append(line)

    tables.convert(block, fallback, True)  # the caches warm: then the lines need no Python
    tables.finish()
    calls = 100  # ~0.5 s of converting: time enough for a loaded machine to run the main thread
    done = 0
    started = threading.Event()

    def work() -> None:
        nonlocal done
        started.set()
        for _ in range(calls):
            tables.convert(block, fallback, True)
            tables.finish()
            done += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        started.wait()
        seen = done  # the main thread runs again: while the worker converts, or after it
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert (seen < calls, done) == (True, calls)


def test_c_converter_refuses_other_threads_while_it_converts(converter: str) -> None:
    """While one thread converts (without the GIL, mostly), another thread may not touch the
    converter: a clear error, not a torn table. The converting thread's own fallback may (it
    appends the rows of the lines it parses)."""
    if converter == "python":
        pytest.skip("the Python converter is only Python")
    tables = columns.object_tables()
    errors: list[str] = []

    def other_thread() -> None:
        for step in (tables.finish, tables.flush, lambda: tables.append(b"", b"", b"x\n")):
            try:
                step()
            except RuntimeError as exc:
                errors.append(str(exc))

    def fallback(line: bytes, served: bytes | None) -> None:
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        tables.append(b"", b"", line + b"\n")

    counted = tables.convert(b"xdownload|1|2|3|4|5|6|7|8|9\n", fallback, True)
    assert (counted, errors, tables.finish()) == (
        (0, 0, 0, 0, 0, None),
        ["the converter is in use by another thread"] * 3,
        (b"", b"", b"xdownload|1|2|3|4|5|6|7|8|9\n"),
    )
