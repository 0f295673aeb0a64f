"""Benchmark: one ingest pass over many small log objects, at several concurrencies.

    .venv/bin/python bench/linehaul_small_objects.py [--objects 1000] [--lines 10]
        [--concurrency 1,4,8,16] [--stores file,s3] [--rounds 1]

An object costs ingest about seventeen store round trips however small it is, and a worker
has up to ``linehaul.ingest_concurrency`` objects under way at once to overlap them. This
times a pass (``ingest_once``) over ``--objects`` log objects of ``--lines`` corpus lines each
(bench/linehaul.py's generator, gzip level 9), from a fresh copy of them each run, into a
``file://`` store in a temporary directory or into a moto S3 server on loopback (started
here, stopped by PID at the end). Each run is a fresh subprocess, so its peak RSS
(``VmHWM``) is its own. Per store and concurrency it prints wall seconds, CPU seconds of the
worker (moto's own CPU is not in it; it shares the cores), CPU milliseconds per object, peak
RSS, and the wall and CPU ratios against concurrency 1 in the same run (the reference). With
``--rounds`` above 1 the concurrencies take turns each round and the median is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from loadgen import machine
from pythonhosted.linehaul.ingest import ingest_once
from pythonhosted.storage import open_store
from pythonhosted.web.server import Bind, free_port, wait_for_port

# bench/linehaul.py, the corpus generator (loaded by path: its name is the reference package's)
_spec = importlib.util.spec_from_file_location("corpus", Path(__file__).with_name("linehaul.py"))
assert _spec is not None and _spec.loader is not None
corpus_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_module)

LOOPBACK_ONLY = {  # an S3 client here must never look for credentials off this machine
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def make_objects(objects: int, lines: int) -> dict[str, bytes]:
    text = corpus_module.corpus(objects * lines, seed=1)
    return {
        f"downloads/2021/01/07/20/54/downloads-bench-{n:05d}.log.gz": gzip.compress(
            ("\n".join(text[n * lines : (n + 1) * lines]) + "\n").encode(), 9
        )
        for n in range(objects)
    }


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto S3 server on loopback, in its own process group, stopped by its PID."""
    bind = Bind("127.0.0.1", free_port())
    argv = [str(Path(sys.executable).parent / "moto_server"), "-H", bind.host]
    process = subprocess.Popen(
        [*argv, "-p", str(bind.port)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(bind, timeout=30)
        yield bind.url()
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def seed(url: str, objects: dict[str, bytes]) -> None:
    store = open_store(url)
    for key, data in objects.items():
        await store.put(key, data)


def run(logs: str, results: str, concurrency: int) -> dict[str, float]:
    """One pass in a fresh subprocess: its wall and CPU seconds and peak RSS."""
    argv = [sys.executable, __file__, "--child", logs, results, str(concurrency)]
    out = subprocess.run(
        argv, env={**os.environ, **LOOPBACK_ONLY}, capture_output=True, timeout=3600
    )
    if out.returncode != 0:
        raise SystemExit(f"concurrency {concurrency} failed: {out.stderr.decode()[-2000:]}")
    return dict(json.loads(out.stdout))


def child(logs: str, results: str, concurrency: int) -> None:
    started, cpu = time.monotonic(), time.process_time()
    summary = asyncio.run(
        ingest_once(
            open_store(logs), open_store(results), lease_timeout=600.0, concurrency=concurrency
        )
    )
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    peak = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    print(json.dumps({"objects": summary.objects, "wall": wall, "cpu": cpu, "peak": peak}))
    sys.stdout.flush()
    # As the console script does (pythonhosted.cli.run): the interpreter's finalisation
    # aborted (SIGABRT, no Python frame) about once in 17 runs after a pass, the work done.
    os._exit(0)


def stores(kinds: list[str], scratch: Path) -> Iterator[tuple[str, Iterator[tuple[str, str]]]]:
    """Per store kind, fresh (logs, results) URLs, one pair per run."""
    for kind in kinds:
        if kind == "file":

            def directories() -> Iterator[tuple[str, str]]:
                for number in range(1_000_000):
                    run_dir = scratch / f"run{number}"
                    yield f"file://{run_dir}/logs", f"file://{run_dir}/results"
                    shutil.rmtree(run_dir, ignore_errors=True)

            yield "file", directories()
        elif kind == "s3":
            with moto_server() as endpoint:

                def buckets() -> Iterator[tuple[str, str]]:
                    for number in range(1_000_000):
                        for name in (f"logs{number}", f"results{number}"):
                            httpx.put(f"{endpoint}/{name}").raise_for_status()
                        query = f"endpoint={endpoint}&allow_http=true"
                        yield f"s3://logs{number}?{query}", f"s3://results{number}?{query}"

                yield "moto S3", buckets()
        else:
            raise SystemExit(f"unknown store {kind!r} (file, s3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--stores", default="file,s3")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    os.environ.update(LOOPBACK_ONLY)
    levels = [int(level) for level in args.concurrency.split(",")]
    if 1 not in levels:
        levels.insert(0, 1)  # the reference
    objects = make_objects(args.objects, args.lines)
    print(f"{args.objects} objects of {args.lines} lines, {args.rounds} round(s); {machine()}")
    with tempfile.TemporaryDirectory() as scratch:
        for label, fresh in stores(args.stores.split(","), Path(scratch)):
            measured: dict[int, list[dict[str, float]]] = {level: [] for level in levels}
            for _ in range(args.rounds):
                for level in levels:
                    logs, results = next(fresh)
                    asyncio.run(seed(logs, objects))
                    result = run(logs, results, level)
                    if result["objects"] != args.objects:
                        raise SystemExit(f"{label}: {result['objects']} objects ingested")
                    measured[level].append(result)
            median = {
                level: {name: statistics.median(r[name] for r in runs) for name in runs[0]}
                for level, runs in measured.items()
            }
            reference = median[1]
            for level, m in median.items():
                print(
                    f"{label:8} concurrency {level:2}: wall {m['wall']:6.2f} s "
                    f"({reference['wall'] / m['wall']:.2f}x), CPU {m['cpu']:6.2f} s "
                    f"({m['cpu'] / reference['cpu']:.2f} of 1's), "
                    f"{m['cpu'] * 1000 / args.objects:.2f} ms/object, "
                    f"peak RSS {m['peak'] / 2**20:.0f} MB"
                )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
