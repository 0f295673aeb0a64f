"""Benchmark: linehaul ingest end to end against bare gunzip + line splitting.

    .venv/bin/python bench/linehaul_ingest.py [--lines 200000] [--seed 1] [--rounds 3] [--dir D]
    .venv/bin/python bench/linehaul_ingest.py --lines 100000,1000000,10000000 [--rounds 1]

**One size** (the default): two gzip'd log objects (level 9, as the files edge writes) from
the corpus generator of bench/linehaul.py (pip/uv JSON agents with Zipf-like repetition): the
corpus as it is (about 90% downloads, 10% simple requests mixed), and its downloads alone, the
shape of the objects the files edge writes under ``downloads/`` (the index writes ``simple/``
apart). Times, in CPU seconds (best of ``--rounds``, cold parser caches each round):

- bare: ``gzip.decompress`` + ``split(b"\\n")`` of the object, the floor; ingest inflates
  with ISA-L (the ``isal`` package), so the floor is also timed with ``isal.igzip.decompress``
  and the ratio printed against both;
- convert: gunzip, parse and NDJSON in memory (:func:`~pythonhosted.linehaul.batch.convert`);
- ingest: ``ingest_once`` over in-memory log and results stores: read the object, gunzip,
  parse, NDJSON per table, write the result objects, delete the log object; also with warm
  caches (the same object again, as a running worker meets agents it has seen before), and
  into a ``file://`` results store in a temporary directory (``--dir``, default the system's),
  where the results cost the kernel a copy into its page cache.

**Several sizes** (``--lines`` a comma-separated list): does ingest stay linear in the
object's size? For each size one object of that many corpus lines, written as gzip members of
100,000 lines each (each member from its own seed, so every 100,000 lines bring new agents and
the work per line is the same at every size; level 9), kept in ``--cache`` for later runs.
Each measurement runs in a fresh subprocess (cold caches, and its peak RSS is its own: it
reports its ``VmHWM``; ``wait4``'s ``ru_maxrss`` would also count the process it was forked
from):

- bare: the object read from its file in 1 MiB pieces, inflated by ISA-L with bounded input
  and split into lines, piece by piece: the linear floor at any size;
- ingest: ``ingest_once`` from a ``file://`` log store to a ``file://`` results store (in
  ``--dir``; results of 10M lines are several GB, removed after each run).

It prints, per size, microseconds of CPU per line of both (ingest's split into user and
kernel time), the ratio (ingest speed / bare speed, from the same run), ingest's cost per line
relative to the smallest size (all CPU, and user CPU alone: writing gigabytes of results into
the page cache costs the kernel more per byte than writing megabytes, on this VM 0.24 ms/MB for
64 MB of plain file writes against 0.66-1.14 ms/MB for 7 GB), and each subprocess's peak RSS.

Ingest converts in C when the extension is built (the default); ``--python`` times the Python
converter it stands in for.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from isal import igzip, igzip_lib

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

KEY = "downloads/2021/01/07/20/54/downloads-bench.log.gz"
MEMBER_LINES = 100_000
READ = 1 << 20


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

    async def run() -> float:
        await logs.put(KEY, data)
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


# -- several sizes ---------------------------------------------------------------------------


def make_object(path: Path, lines: int, seed: int) -> None:
    """``lines`` corpus lines as gzip members of :data:`MEMBER_LINES`, written to ``path``."""
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        for member, start in enumerate(range(0, lines, MEMBER_LINES)):
            count = min(MEMBER_LINES, lines - start)
            text = "\n".join(corpus_module.corpus(count, seed + member)) + "\n"
            out.write(gzip.compress(text.encode(), 9))
    partial.rename(path)


def _times() -> tuple[float, float]:
    """CPU seconds of this process so far (every thread): user, kernel."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _spent(began: tuple[float, float], lines: int) -> dict[str, float]:
    user, kernel = (now - then for now, then in zip(_times(), began, strict=True))
    return {"cpu": user + kernel, "user": user, "sys": kernel, "lines": lines}


def bare_streaming(path: Path) -> dict[str, float]:
    """Inflate ``path`` with bounded input and split it into lines, piece by piece."""
    began = _times()
    lines = 0
    with path.open("rb") as source:
        pending = source.read(READ)
        while pending:
            inflate = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
            while not inflate.eof:
                if inflate.needs_input:
                    if not pending:
                        pending = source.read(READ)
                        assert pending, "the object ends inside a member"
                    chunk, pending = pending, b""
                else:
                    chunk = b""
                lines += len(inflate.decompress(chunk, READ).split(b"\n")) - 1
            pending = inflate.unused_data or source.read(READ)
    return _spent(began, lines)


def ingest_file(path: Path, directory: str | None) -> dict[str, float]:
    """``ingest_once`` of the object at ``path`` between two ``file://`` stores."""
    with tempfile.TemporaryDirectory(dir=directory) as work:
        logs_dir = Path(work, "logs", KEY).parent
        logs_dir.mkdir(parents=True)
        os.link(path, Path(work, "logs", KEY))
        logs = open_store(f"file://{work}/logs")
        results = open_store(f"file://{work}/results")
        began = _times()
        summary = asyncio.run(ingest_once(logs, results, lease_timeout=600))
        assert summary.objects == 1, summary
        counts = summary.counts
        return _spent(began, counts.rows + counts.ignored + counts.unprocessable)


def _child(args: list[str]) -> tuple[dict[str, float], float]:
    """Run this script in a subprocess; its JSON answer and its peak RSS in MB."""
    command = [sys.executable, __file__, *args]
    done = subprocess.run(command, stdout=subprocess.PIPE, check=False, start_new_session=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode})")
    answer = json.loads(done.stdout)
    return answer, answer.get("peak_kb", 0) / 1024


def _peak_kb() -> int:
    """This process's peak RSS: the high-water mark of its own address space."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def scaling(sizes: list[int], args: argparse.Namespace) -> None:
    """Each round measures every size in turn (the load of a shared machine drifts over
    minutes: sizes measured one after the other would each meet a different load); the
    best round of each size counts."""
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    python = ["--python"] if args.python else []
    paths = {lines: cache / f"corpus-{lines}-{args.seed}.log.gz" for lines in sizes}
    for lines, path in paths.items():
        if not path.exists():
            print(f"writing {path} ...", flush=True)
            make = ["--child", "make", "--object", str(path), f"--lines={lines}"]
            _child([*make, f"--seed={args.seed}"])
    runs: dict[int, list[tuple[str, dict[str, float], float]]] = {lines: [] for lines in sizes}
    for round_ in range(args.rounds):
        for lines, path in paths.items():
            for kind in ("bare", "ingest"):
                extra = [*python, *_dir(args)] if kind == "ingest" else []
                answer, peak = _child(["--child", kind, "--object", str(path), *extra])
                assert answer["lines"] == lines
                runs[lines].append((kind, answer, peak))
                print(
                    f"round {round_ + 1}: {lines:>11,} lines, {kind:<6} {answer['cpu']:7.2f} s "
                    f"({answer['cpu'] / lines * 1e6:.2f} us/line), peak RSS {peak:.0f} MB",
                    flush=True,
                )
    print(
        "\n| lines | gzip'd MB | bare us/line | ingest us/line (user + sys) | vs smallest: all "
        "/ user | ratio (ingest / bare speed) | peak RSS bare / ingest MB |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    smallest: tuple[float, float] | None = None
    for lines, path in paths.items():
        bare = min((answer for kind, answer, _ in runs[lines] if kind == "bare"), key=_cpu)
        ours = min((answer for kind, answer, _ in runs[lines] if kind == "ingest"), key=_cpu)
        peaks = [
            max(peak for kind, _, peak in runs[lines] if kind == k) for k in ("bare", "ingest")
        ]
        per_line = (ours["cpu"] / lines, ours["user"] / lines)
        smallest = smallest or per_line
        print(
            f"| {lines:,} | {path.stat().st_size / 1e6:.1f} | {bare['cpu'] / lines * 1e6:.2f} "
            f"| {per_line[0] * 1e6:.2f} ({per_line[1] * 1e6:.2f} + "
            f"{ours['sys'] / lines * 1e6:.2f}) | {per_line[0] / smallest[0]:.2f}x / "
            f"{per_line[1] / smallest[1]:.2f}x | {bare['cpu'] / ours['cpu']:.2f}x "
            f"| {peaks[0]:.0f} / {peaks[1]:.0f} |"
        )


def _cpu(answer: dict[str, float]) -> float:
    return answer["cpu"]


def _dir(args: argparse.Namespace) -> list[str]:
    return ["--dir", args.dir] if args.dir else []


def main() -> None:
    flags = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    flags.add_argument("--lines", default="200000", help="a size, or sizes separated by commas")
    flags.add_argument("--seed", type=int, default=1)
    flags.add_argument("--rounds", type=int, default=3)
    flags.add_argument("--python", action="store_true", help="the Python converter, not C")
    flags.add_argument("--dir", help="where the file:// results store goes (a temporary dir)")
    flags.add_argument(
        "--cache",
        default=os.path.join(tempfile.gettempdir(), "linehaul-bench-objects"),
        help="where objects for several sizes are kept between runs",
    )
    flags.add_argument("--child", choices=("make", "bare", "ingest"), help=argparse.SUPPRESS)
    flags.add_argument("--object", help=argparse.SUPPRESS)
    args = flags.parse_args()
    if args.python:
        columns._columns = None
    sizes = [int(size) for size in args.lines.split(",")]
    if args.child:
        path = Path(args.object)
        if args.child == "make":
            make_object(path, sizes[0], args.seed)
            print("{}")
        else:
            measured = bare_streaming(path) if args.child == "bare" else ingest_file(path, args.dir)
            print(json.dumps({**measured, "peak_kb": _peak_kb()}))
        return
    print(f"machine: {corpus_module._machine()}")
    print(f"converter: {'Python' if columns._columns is None else 'C'}")
    if len(sizes) > 1:
        scaling(sizes, args)
        return
    lines = corpus_module.corpus(sizes[0], args.seed)
    measure("mixed object (the corpus)", lines, args.rounds, args.dir)
    downloads = [line for line in lines if line.startswith("download|")]
    measure(
        "downloads-only object (as the files edge writes them)", downloads, args.rounds, args.dir
    )


if __name__ == "__main__":
    main()
