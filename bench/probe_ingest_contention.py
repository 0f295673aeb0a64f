"""Probe: several ingest workers at once over many small log objects, with leases that cannot
expire; count the leases lost, the objects done twice and the objects left.

    .venv/bin/python bench/probe_ingest_contention.py [--workers 3] [--objects 400]
        [--lines 5] [--concurrency 8] [--rounds 10] [--stores file,s3] [--busy 2]

Each round seeds ``--objects`` log objects of ``--lines`` corpus lines into a fresh log store
(a ``file://`` directory, or a bucket of a moto S3 server on loopback) and starts
``--workers`` processes at once, each one ``ingest_once`` pass with 120 s leases and
``--concurrency`` objects under way, its stores opened as ``ingest --once`` opens them. With
leases that long a lost lease can only be a bug: every worker renews its lease twice per
object (before writing its results, before deleting the log object), so small objects make
many renewals for the others' claims to race. Per round
it prints each worker's objects and busy counts, its "lost the lease" warnings, the result
objects more than one worker wrote (work done twice) and the log objects left. ``--busy``
CPU-bound processes run beside the workers (killed by PID at the end), as the loaded machine
the check failed on; the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

from linehaul_small_objects import LOOPBACK_ONLY, make_objects, seed, stores
from loadgen import machine
from pythonhosted.linehaul.ingest import ingest_once
from pythonhosted.pipeline import BATCH_TIMEOUTS
from pythonhosted.storage import Store, open_store

LEASE = 120.0
WORKER_SECONDS = 600  # a worker's bound; a round's workers are killed by PID after it


class _Lost(logging.Handler):
    """Counts the leases module's "lost the lease" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "lost the lease" in record.getMessage():
            self.lines.append(record.getMessage())


class _Recorded:
    """A results store (the same one) that records the keys this worker wrote."""

    def __init__(self, base: Store) -> None:
        self.base = base
        self.written: list[str] = []

    async def put(self, key: str, data: bytes, **options: Any) -> None:
        self.written.append(key)
        await self.base.put(key, data, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WORKER_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never appeared")
        time.sleep(0.01)


def child(logs: str, results: str, concurrency: int, start: Path) -> None:
    """One worker: ready (imports done), then one pass once ``start`` exists."""
    (start.parent / f"ready-{os.getpid()}").touch()
    _wait_for(start)
    lost = _Lost()
    logging.getLogger("pythonhosted.linehaul.leases").addHandler(lost)
    recorded = _Recorded(open_store(results, BATCH_TIMEOUTS))  # as `ingest --once` opens them
    summary = asyncio.run(
        ingest_once(
            open_store(logs, BATCH_TIMEOUTS),
            recorded,  # type: ignore[arg-type]
            lease_timeout=LEASE,
            concurrency=concurrency,
        )
    )
    done = {"objects": summary.objects, "busy": summary.busy, "lost": lost.lines}
    print(json.dumps({**done, "written": recorded.written}))
    sys.stdout.flush()
    os._exit(0)  # as the console script does (see linehaul_small_objects.child)


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env={**os.environ, **LOOPBACK_ONLY},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def round_of(logs: str, results: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start the workers' passes at once (each one's imports done), wait for them; what they
    report, summed."""
    with tempfile.TemporaryDirectory() as handshake:
        start = Path(handshake) / "start"
        argv = [sys.executable, __file__, "--child", logs, results, str(args.concurrency)]
        workers = [_spawn([*argv, str(start)]) for _ in range(args.workers)]
        reports = _reports(workers, start, args.workers)
    writers = Counter(key for report in reports for key in set(report["written"]))
    left = asyncio.run(open_store(logs).list("downloads/"))
    return {
        "objects": [report["objects"] for report in reports],
        "busy": [report["busy"] for report in reports],
        "lost": [line for report in reports for line in report["lost"]],
        "twice": sum(1 for count in writers.values() if count > 1),
        "left": len(left),
    }


def _reports(workers: list[subprocess.Popen[bytes]], start: Path, count: int) -> list[Any]:
    reports = []
    try:
        deadline = time.monotonic() + WORKER_SECONDS
        while len(list(start.parent.glob("ready-*"))) < count:
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise SystemExit("the workers did not all start")
            time.sleep(0.01)
        start.touch()
        for process in workers:
            out, err = process.communicate(timeout=WORKER_SECONDS)
            if process.returncode != 0:
                raise SystemExit(f"a worker failed: {err.decode()[-2000:]}")
            reports.append(json.loads(out))
    finally:
        for process in workers:
            _stop(process)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--objects", type=int, default=400)
    parser.add_argument("--lines", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--stores", default="file,s3")
    parser.add_argument("--busy", type=int, default=2, help="CPU-bound processes beside")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), Path(args.child[3]))
        return
    os.environ.update(LOOPBACK_ONLY)
    objects = make_objects(args.objects, args.lines)
    print(
        f"{args.workers} workers, {args.objects} objects of {args.lines} lines, concurrency "
        f"{args.concurrency}, {args.rounds} rounds, {args.busy} busy loops; {machine()}"
    )
    busy_loop = f"import time\nend = time.time() + {WORKER_SECONDS * args.rounds}\n"
    busy_loop += "while time.time() < end: pass\n"
    loops = [_spawn([sys.executable, "-c", busy_loop]) for _ in range(args.busy)]
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for label, fresh in stores(args.stores.split(","), Path(scratch)):
                for number in range(args.rounds):
                    logs, results = next(fresh)
                    asyncio.run(seed(logs, objects))
                    started = time.monotonic()
                    found = round_of(logs, results, args)
                    print(
                        f"{label:8} round {number + 1:2}: objects {found['objects']} "
                        f"busy {found['busy']}, lost leases {len(found['lost'])}, "
                        f"done twice {found['twice']}, left {found['left']}, "
                        f"{time.monotonic() - started:.1f} s, load {os.getloadavg()[0]:.1f}"
                    )
                    for line in found["lost"][:3]:
                        print(f"    {line}")
    finally:
        for process in loops:
            _stop(process)


if __name__ == "__main__":
    main()
