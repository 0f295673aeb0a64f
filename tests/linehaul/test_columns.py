"""The column-at-a-time converter against the per-line parser: byte-identical results.

The oracle is the straightforward path: split the object into lines, ``parse`` each (UTF-8
with U+FFFD), ``orjson.dumps`` each row. ``convert`` must give exactly the same bytes per table,
the same unprocessed lines, counts and earliest timestamp, on the differential corpus (junk,
blanks, tabs, controls, wrong field counts, 1 MB lines), the benchmark corpus, the real
batches, and those corpora with random damage, at several block sizes (so block boundaries,
the halving fallback and single-line blocks are all exercised). Every test runs twice: with
the C converter (``_columns.c``, which CI builds: its absence fails the native runs) and with
the Python one it stands in for.
"""

from __future__ import annotations

import gzip
import importlib.util
import random
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from pythonhosted.linehaul import UnprocessableLine, batch, columns, parse
from pythonhosted.linehaul.batch import Converted, convert
from support.linehaul_data import REAL

HERE = Path(__file__).parent
DAMAGE = ["|", "\t", "\r", "\n", " ", '"', "\\", "\x00", "\x7f", "é", "(null)", "\n\n", "download|"]


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


def oracle(text: bytes) -> Converted:
    """What converting means, one line at a time."""
    lines = text.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    out = Converted()
    downloads, simple, unprocessed = [], [], []
    timestamps = []
    for line in lines:
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


def check(text: bytes) -> None:
    ours = convert(gzip.compress(text, 1))
    expected = oracle(text)
    assert ours.counts == expected.counts
    assert ours.earliest == expected.earliest
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
        b"garbage",
        b"simple|a|b|c|d|e|f|g|h|i\n" * 3,
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


def test_random_blocks_convert_in_c_as_in_python(converter: str, bench: list[str]) -> None:
    """Blocks of a few lines with random damage (and some without a last newline) through
    the C converter: the same answer as :func:`convert_block` for each block, rows or None."""
    if converter == "python":
        pytest.skip("compares the C converter with the Python one")
    rng = random.Random(11)
    pieces = ["|", "\n", "/", " ", "download", "simple", '"', "\\", "\t", "\x7f", "(null)", "é"]
    converted = 0
    for _ in range(3000):
        lines = []
        for _ in range(rng.randrange(1, 12)):
            line = rng.choice(bench)
            if rng.random() < 0.3:
                spot = rng.randrange(len(line) + 1)
                line = line[:spot] + rng.choice(pieces) + line[spot + rng.randrange(3) :]
            lines.append(line + "\n")
        block = "".join(lines).encode()
        if rng.random() < 0.05:
            block = block[:-1]
        tables = columns.object_tables()
        counted = tables.convert(block)
        expected = columns.convert_block(block)
        if expected is None:
            assert counted is None
            assert tables.finish() == (b"", b"")
            continue
        converted += 1
        assert counted == (expected.rows, expected.ignored, expected.earliest)
        assert tables.finish() == (expected.downloads, expected.simple)
    assert converted > 1000
