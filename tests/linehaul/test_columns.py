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

import gzip
import importlib.util
import random
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from pythonhosted.linehaul import UnprocessableLine, batch, columns, lines, parse
from pythonhosted.linehaul.batch import DEFAULT_MAX_LINE, Converted, convert
from support.linehaul_data import REAL

HERE = Path(__file__).parent
DAMAGE = [
    *("|", "\t", "\r", "\n", " ", '"', "\\", "\x00", "\x7f", "é", "(null)", "\n\n", "download|"),
    *("\n \n", "\n\r\n", "\n\t \r\n", "\n" * 5, "simple", "x|" * 9),  # blank lines; fields
    "y" * 3000,  # a long line when the limit is small
    "z" * (DEFAULT_MAX_LINE + 1),  # a line over the default limit
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
    """What converting means, one line at a time."""
    all_lines = text.split(b"\n")
    if all_lines and not all_lines[-1]:
        all_lines.pop()
    out = Converted()
    downloads, simple, unprocessed = [], [], []
    timestamps = []
    for line in all_lines:
        if len(line) > max_line:
            out.counts.too_long += 1
            if len(out.samples) < lines.SAMPLES:
                out.samples.append(line[: min(lines.SAMPLE_BYTES, max_line)])
            continue
        if not line.strip(b" \t\r"):
            out.counts.blank += 1
            continue
        try:
            row = parse(line.decode("utf-8", "replace"))
        except UnprocessableLine:
            unprocessed.append(line + b"\n")
            continue
        if row is None:
            out.counts.ignored += 1
            continue
        timestamps.append(row["timestamp"])
        (downloads if "file" in row else simple).append(orjson.dumps(row) + b"\n")
    out.downloads, out.simple = b"".join(downloads), b"".join(simple)
    out.unprocessed = b"".join(unprocessed)
    out.counts.rows = len(downloads) + len(simple)
    out.counts.unprocessable = len(unprocessed)
    out.earliest = min(timestamps, default=None)
    return out


def check(text: bytes, max_line: int = DEFAULT_MAX_LINE) -> None:
    ours = convert(gzip.compress(text, 1), max_line)
    expected = oracle(text, max_line)
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


def test_blank_lines_take_no_fallback(bench: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank lines among rows are counted and dropped by the converters themselves: never
    one call of the per-line parser (a gigabyte of newlines would make a billion)."""
    calls: list[bytes] = []
    per_line = batch.ObjectConverter._add_line

    def counted(self: batch.ObjectConverter, line: bytes) -> None:
        calls.append(line)
        per_line(self, line)

    monkeypatch.setattr(batch.ObjectConverter, "_add_line", counted)
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
    parser._tables = tables
    rows, ignored, blank, unprocessable, earliest = tables.convert(
        block, parser._add_line, columns.valid_utf8(block)
    )
    counts = parser.counts
    totals = (rows + counts.rows, ignored + counts.ignored, blank + counts.blank)
    earliest = min(filter(None, (earliest, parser._earliest)), default=None)
    return (*totals, unprocessable + counts.unprocessable, earliest, tables.finish())


def test_random_blocks_convert_in_c_as_in_python(converter: str, bench: list[str]) -> None:
    """Blocks of a few lines with random damage (blank lines, lines of too few fields or an
    odd kind, bytes that are not UTF-8 among it) through the C converter and through the
    Python one, with the per-line parser behind each: the same counts and results."""
    if converter == "python":
        pytest.skip("compares the C converter with the Python one")
    rng = random.Random(11)
    pieces = ["|", "\n", "/", " ", "download", "simple", '"', "\\", "\t", "\x7f", "(null)", "é"]
    pieces += ["\n\n", "\n \r\n", "\r", "xdownload", "simplex", "downl oad", "\udcff"]
    fast = 0
    for _ in range(3000):
        lines = []
        for _ in range(rng.randrange(1, 12)):
            line = rng.choice(bench)
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
