"""Benchmark: does ingest scale with workers? One ``linehaul ingest --once`` process against two
at once, over the same log objects, in the same run.

    .venv/bin/python bench/linehaul_workers.py [--objects 16] [--lines 100000] [--rounds 3]

The log objects (gzip level 9, as the files edge writes them; corpus of bench/linehaul.py)
are generated once into a temporary ``file://`` log store and copied fresh for every run;
results go to a ``file://`` results store in the same temporary directory. Two workers split
the objects through ingest's leases (create-only lease objects: no coordination service).
It prints the wall time of each run, the speed-up of two workers over one (target >= 1.7x on
two cores), and the machine's load average, which a speed-up on shared cores depends on.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadgen import machine

# bench/linehaul.py, the corpus generator (loaded by path: its name is the reference package's)
_spec = importlib.util.spec_from_file_location("corpus", Path(__file__).with_name("linehaul.py"))
assert _spec is not None and _spec.loader is not None
corpus_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_module)


def make_logs(directory: Path, objects: int, lines: int) -> None:
    for number in range(objects):
        key = directory / "downloads" / "2026" / "12" / "05" / "00" / f"{number:02d}"
        key.mkdir(parents=True, exist_ok=True)
        text = "\n".join(corpus_module.corpus(lines, seed=number)) + "\n"
        (key / f"downloads-bench-{number:04d}.log.gz").write_bytes(gzip.compress(text.encode(), 9))


def run(workers: int, template: Path, scratch: Path) -> float:
    """Wall seconds for ``workers`` ingest processes to drain a fresh copy of the logs."""
    logs, results = scratch / "logs", scratch / "results"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(template, logs)
    argv = [sys.executable, "-m", "pythonhosted", "linehaul", "ingest", "--once"]
    argv += ["--logs", f"file://{logs}", "--results", f"file://{results}"]
    env = {**os.environ, "PYTHONHOSTED_DATA_DIR": str(scratch / "data")}
    started = time.monotonic()
    processes = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    for process in processes:
        if process.wait(timeout=3600) != 0:
            raise SystemExit(f"ingest failed with exit status {process.returncode}")
    elapsed = time.monotonic() - started
    left = [p for p in (logs / "downloads").rglob("*.log.gz") if p.is_file()]
    if left:
        raise SystemExit(f"{len(left)} log objects left after the run: {left[:3]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=16)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-ingest-workers-") as work:
        template = Path(work) / "template"
        make_logs(template, args.objects, args.lines)
        scratch = Path(work) / "scratch"
        one: list[float] = []
        two: list[float] = []
        for _ in range(args.rounds):  # alternate, so drifting load meets both alike
            one.append(run(1, template, scratch))
            two.append(run(2, template, scratch))
            print(f"1 worker {one[-1]:6.2f} s   2 workers {two[-1]:6.2f} s   {machine()}")
    lines = args.objects * args.lines
    best_one, best_two = min(one), min(two)
    speeds = f"1 worker {lines / best_one:,.0f} lines/s, 2 workers {lines / best_two:,.0f}"
    print(f"{lines:,} lines: {speeds} lines/s: {best_one / best_two:.2f}x (best of {args.rounds})")


if __name__ == "__main__":
    main()
