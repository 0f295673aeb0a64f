"""Benchmark: how long does ingest's conversion stall the event loop it shares with others?

In ``pythonhosted serve`` every service runs on one event loop, and ingest converts in a
thread of the same process: whatever the conversion does while holding the GIL, the loop
(downloads, lease renewals) waits for. This runs ``ingest_once`` over one large log object
(``--lines``, bench/linehaul.py's corpus, ``file://`` stores) beside a ticker task that sleeps
1 ms at a time and records how late each turn comes back, and a task that renews a lease
every 20 ms as an ingest worker's keeper does (a create-only put, an info and a delete, each
a trip to a thread), and prints the percentiles and maximum of both, the ingest's CPU seconds
and the machine's load. ``--load N`` runs N busy-looping
processes meanwhile (bounded: they end with the run, at most ``--seconds`` later), as the
loaded CI machine does.

    .venv/bin/python bench/linehaul_loop_pauses.py [--lines 500000] [--rounds 3] [--load 0]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from isal import igzip

from loadgen import machine
from pythonhosted.linehaul import leases
from pythonhosted.linehaul.ingest import ingest_once
from pythonhosted.storage import Store, open_store

_spec = importlib.util.spec_from_file_location("corpus", Path(__file__).with_name("linehaul.py"))
assert _spec is not None and _spec.loader is not None
corpus_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_module)

TICK = 0.001
BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


async def ticker(done: asyncio.Event, late: list[float], held: list[float]) -> None:
    """Each turn's lateness, and the part of it this process spent running (its CPU time
    meanwhile, less the turn itself): on a loaded machine a turn is also late when the
    process waits for a core, but while the process runs and the loop does not, another
    thread holds the GIL."""
    while not done.is_set():
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.sleep(TICK)
        wall = time.perf_counter() - started - TICK
        late.append(wall)
        held.append(min(wall, max(time.process_time() - cpu - TICK, 0.0)))


async def renewer(store: Store, done: asyncio.Event, took: list[float]) -> None:
    """Renew a lease of a key of its own every 20 ms, as an ingest worker's keeper does (a
    create-only put, an info and a delete, each a trip to a thread), timing each renewal."""
    lease = await leases.claim(store, "renewal-probe.log.gz", "bench", 300.0)
    assert lease is not None
    while not done.is_set():
        await asyncio.sleep(0.02)
        started = time.perf_counter()
        lease = await leases.renew(store, lease, "bench", 300.0)
        took.append(time.perf_counter() - started)
        assert lease is not None
    await leases.release(store, lease.key)


async def one_run(data: bytes, work: Path) -> tuple[list[float], list[float], list[float], float]:
    logs = work / "logs" / "downloads" / "00"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "big.log.gz").write_bytes(data)
    store = open_store(f"file://{work / 'logs'}")
    done = asyncio.Event()
    late: list[float] = []
    held: list[float] = []
    took: list[float] = []
    tick = asyncio.create_task(ticker(done, late, held))
    renewals = asyncio.create_task(renewer(open_store(f"file://{work / 'leases'}"), done, took))
    cpu = time.process_time()
    summary = await ingest_once(
        store, open_store(f"file://{work / 'results'}"), lease_timeout=300.0
    )
    cpu = time.process_time() - cpu
    done.set()
    await tick
    await renewals
    assert summary.objects == 1, summary.line()
    return late, held, took, cpu


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=int, default=0, help="busy processes beside")
    parser.add_argument("--seconds", type=float, default=300.0, help="their bound")
    args = parser.parse_args()
    text = ("\n".join(corpus_module.corpus(args.lines, seed=1)) + "\n").encode()
    data = igzip.compress(text, 1)
    print(f"{machine()}; {args.lines} lines, {len(text) >> 20} MB, {len(data) >> 20} MB gzip")
    busy = [
        subprocess.Popen(
            [sys.executable, "-c", BUSY.format(seconds=args.seconds)], start_new_session=True
        )
        for _ in range(args.load)
    ]
    try:
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench-loop-pauses-") as work:
                late, held, took, cpu = asyncio.run(one_run(data, Path(work)))
            ms = [value * 1000 for value in late]
            held_ms = [value * 1000 for value in held]
            renew_ms = [value * 1000 for value in took]
            print(
                f"load {os.getloadavg()[0]:.1f} (+{args.load} busy): ingest {cpu:.2f} CPU s; "
                f"{len(ms)} turns, pause p50 {percentile(ms, 0.5):.1f} ms, "
                f"p99 {percentile(ms, 0.99):.1f} ms, p99.9 {percentile(ms, 0.999):.1f} ms, "
                f"max {max(ms):.0f} ms; over 50 ms: {sum(m > 50 for m in ms)}, "
                f"over 200 ms: {sum(m > 200 for m in ms)}; of it while the process ran: "
                f"p99 {percentile(held_ms, 0.99):.1f} ms, max {max(held_ms):.0f} ms, "
                f"total {sum(held_ms):.0f} ms; {len(renew_ms)} renewals, "
                f"p50 {percentile(renew_ms, 0.5):.1f} ms, p99 {percentile(renew_ms, 0.99):.1f} "
                f"ms, max {max(renew_ms):.0f} ms",
                flush=True,
            )
    finally:
        for process in busy:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


if __name__ == "__main__":
    main()
