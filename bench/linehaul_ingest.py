"""Benchmark: linehaul ingest end to end against bare gunzip + line splitting.

    .venv/bin/python bench/linehaul_ingest.py [--lines 200000] [--seed 1] [--rounds 3] [--dir D]

Two gzip'd log objects (level 9, as the files edge writes) from the corpus generator of
bench/linehaul.py (pip/uv JSON agents with Zipf-like repetition): the corpus as it is (about
90% downloads, 10% simple requests mixed), and its downloads alone, the shape of the objects
the files edge writes under ``downloads/`` (the index writes ``simple/`` apart). Times,
in CPU seconds (best of ``--rounds``, cold parser caches each round):

- bare: ``gzip.decompress`` + ``split(b"\\n")`` of the object, the floor; ingest inflates
  with ISA-L (the ``isal`` package), so the floor is also timed with ``isal.igzip.decompress``
  and the ratio printed against both;
- convert: gunzip, parse and NDJSON in memory (:func:`~pythonhosted.linehaul.batch.convert`);
- ingest: ``ingest_once`` over in-memory log and results stores: read the object, gunzip,
  parse, NDJSON per table, write the result objects, delete the log object; also with warm
  caches (the same object again, as a running worker meets agents it has seen before), and
  into a ``file://`` results store in a temporary directory (``--dir``, default the system's),
  where the results cost the kernel a copy into its page cache.

Ingest converts in C when the extension is built (the default); ``--python`` times the Python
converter it stands in for.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from isal import igzip

from pythonhosted.linehaul import columns
from pythonhosted.linehaul.batch import convert
from pythonhosted.linehaul.columns import MEMOS
from pythonhosted.linehaul.events import TIMESTAMPS
from pythonhosted.linehaul.ingest import ingest_once
from pythonhosted.linehaul.useragents import KNOWN
from pythonhosted.storage import open_store

_spec = importlib.util.spec_from_file_location("corpus", Path(__file__).with_name("linehaul.py"))
assert _spec is not None and _spec.loader is not None
corpus_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_module)


def bare(data: bytes, gunzip: Callable[[bytes], bytes]) -> float:
    began = time.process_time()
    lines = gunzip(data).split(b"\n")
    spent = time.process_time() - began
    assert lines
    return spent


def _cold() -> None:
    for memo in (KNOWN, TIMESTAMPS, *MEMOS):
        memo.clear()


def parse_only(data: bytes) -> float:
    _cold()
    began = time.process_time()
    convert(data)
    return time.process_time() - began


def ingest(data: bytes, round_: int, *, cold: bool = True, results_url: str = "") -> float:
    if cold:
        _cold()
    logs = open_store(f"memory://bench-logs-{round_}")
    results = open_store(results_url or f"memory://bench-results-{round_}")
    key = "downloads/2021/01/07/20/54/downloads-bench.log.gz"

    async def run() -> float:
        await logs.put(key, data)
        began = time.process_time()
        summary = await ingest_once(logs, results, lease_timeout=600)
        spent = time.process_time() - began
        assert summary.objects == 1
        return spent

    return asyncio.run(run())


def ingest_to_files(data: bytes, round_: int, directory: str | None) -> float:
    with tempfile.TemporaryDirectory(dir=directory) as results:
        return ingest(data, round_, results_url=f"file://{results}")


def measure(label: str, lines: list[str], rounds: int, directory: str | None) -> None:
    raw = ("\n".join(lines) + "\n").encode()
    data = gzip.compress(raw, 9)
    print(
        f"\n{label}: {len(lines)} lines, {len(raw) / 1e6:.1f} MB, {len(data) / 1e6:.1f} MB gzip'd"
    )
    floors = {
        name: min(bare(data, gunzip) for _ in range(rounds))
        for name, gunzip in (("gzip", gzip.decompress), ("isal", igzip.decompress))
    }
    converting = min(parse_only(data) for _ in range(rounds))
    ours = min(ingest(data, n) for n in range(rounds))
    warm = min(ingest(data, rounds + n, cold=False) for n in range(rounds))
    to_files = min(ingest_to_files(data, 2 * rounds + n, directory) for n in range(rounds))
    for name, floor in floors.items():
        print(f"bare {name}+split    {floor:6.3f} s  {len(lines) / floor:>12,.0f} lines/s")
    print(f"convert (no I/O)   {converting:6.3f} s  {len(lines) / converting:>12,.0f} lines/s")
    print(f"ingest end to end  {ours:6.3f} s  {len(lines) / ours:>12,.0f} lines/s")
    print(f"  with warm caches {warm:6.3f} s  {len(lines) / warm:>12,.0f} lines/s")
    print(f"  into file://     {to_files:6.3f} s  {len(lines) / to_files:>12,.0f} lines/s")
    for name, floor in floors.items():
        ratios = f"{floor / ours:.2f}x, warm {floor / warm:.2f}x, file:// {floor / to_files:.2f}x"
        print(f"ratio (ingest speed / bare {name} speed) {ratios}")


def main() -> None:
    flags = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    flags.add_argument("--lines", type=int, default=200_000)
    flags.add_argument("--seed", type=int, default=1)
    flags.add_argument("--rounds", type=int, default=3)
    flags.add_argument("--python", action="store_true", help="the Python converter, not C")
    flags.add_argument("--dir", help="where the file:// results store goes (a temporary dir)")
    args = flags.parse_args()
    if args.python:
        columns._columns = None
    lines = corpus_module.corpus(args.lines, args.seed)
    print(f"machine: {corpus_module._machine()}")
    print(f"converter: {'Python' if columns._columns is None else 'C'}")
    measure("mixed object (the corpus)", lines, args.rounds, args.dir)
    downloads = [line for line in lines if line.startswith("download|")]
    measure(
        "downloads-only object (as the files edge writes them)", downloads, args.rounds, args.dir
    )


if __name__ == "__main__":
    main()
