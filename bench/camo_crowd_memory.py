"""Benchmark: camo's resident memory after a crowd of clients of one image has gone.

    .venv/bin/python bench/camo_crowd_memory.py [--runs 3] [--clients 5000] [--crowds 1]
                                                [--env NAME=VALUE ...] [--trace DIR] [--src PATH]

``--clients`` clients ask one 1 MB image at once through ``camo serve --cache-dir`` (one
process) while its host takes 3 s to answer (as ``probe_camo_scale.py --parts herd``). Printed
per run: camo's RSS (its process group) idle, at the peak, and 1, 3, 6, 10 and 20 s after the
last answer, each as a ratio to idle (the target, issue 16: within 1.2x a few seconds after),
and which kinds of mapping grew (``/proc/PID/smaps`` 10 s after against idle). ``--crowds``
sends that many crowds one after another to the same process; ``--env`` sets variables for
camo only (``PYTHONMALLOC=malloc``, ``LD_PRELOAD=...``: the allocators compared).

``--trace DIR`` finds what the crowd leaves alive: camo runs under
``bench/camo_crowd_launcher.py``, which starts ``tracemalloc`` (``--frames``) on SIGUSR1, sent
just before the crowd, so only blocks allocated from then on are traced; on SIGUSR2, sent 4 s
after camo's last request ended (past its relief), it writes what is still alive of them, by
traceback and by arena (see the launcher), to ``DIR/run-N.snapshot*``, printed here. Tracing
slows the crowd (clients may time out): its RSS numbers are not the untraced ones.

``--src PATH`` puts PATH first on camo's ``PYTHONPATH`` (another tree's ``src``, for
before/after runs at the same load). Loopback only; every process started here is in its own
process group and stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from contextlib import suppress
from pathlib import Path

from loadgen import machine
from probe_camo_scale import PYTHON, Camo, ImageHost, get_all, group_pids, image, rss_mib

AFTER = (1, 3, 6, 10, 20)  # seconds after the last answer that RSS is read
SMAPS_AT = 10  # when the mappings' resident sizes are compared with idle ones
TRACE_AFTER = 4.0  # a traced run's snapshot: this long after camo's last request ended

LAUNCHER = Path(__file__).with_name("camo_crowd_launcher.py")


def crowd(
    tmp: Path,
    host: ImageHost,
    loop: asyncio.AbstractEventLoop,
    clients: int,
    trace: Path | None,
    frames: int = 12,
    env: dict[str, str] | None = None,
    crowds: int = 1,
) -> dict[str, float]:
    """One run: RSS idle, peak, and AFTER seconds after the crowd (MiB), and its answers."""
    camo = Camo(tmp, tmp / f"cache-{time.monotonic_ns()}", "--timeout=20s")
    if env:
        camo.env = {**os.environ, **env}
    if trace is not None:
        camo.command[:1] = [PYTHON, str(LAUNCHER), str(trace), str(frames)]
    camo.start()
    try:
        time.sleep(1)  # past start-up's own allocations
        idle = rss_mib(camo.pgid)
        idle_maps = mappings(camo.pgid)
        if trace is not None:
            os.kill(camo.pgid, signal.SIGUSR1)
            time.sleep(0.5)
        peak = idle
        for _ in range(crowds):
            target = host.url("img", f"crowd{time.monotonic_ns()}", size=1_000_000, delay=3)
            pending = asyncio.run_coroutine_threadsafe(
                get_all([camo.url(target)] * clients, timeout=120), loop
            )
            while not pending.done():
                peak = max(peak, rss_mib(camo.pgid))
                time.sleep(0.2)
            answers = pending.result()
        ended = time.monotonic()
        name = target.rsplit("/", 1)[1].split("?")[0]
        whole = sum(status == 200 and body == image(name, 1_000_000) for status, body in answers)
        result = {"idle": idle, "peak": peak, "whole": whole}
        if trace is not None:
            deadline = time.monotonic() + 180
            while camo.metric("camo_requests_in_flight") > 1 and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(TRACE_AFTER)
            os.kill(camo.pgid, signal.SIGUSR2)
            done = Path(f"{trace}.done")
            deadline = time.monotonic() + 600  # walking the arenas takes a minute or more
            while not done.exists() and time.monotonic() < deadline:
                time.sleep(0.5)
            for line in camo.log.read_text(errors="replace").splitlines():
                if "arenas" in line or "in used blocks" in line or "pools" in line:
                    print(f"  {line.strip()}")
        for seconds in AFTER:
            time.sleep(max(0.0, ended + seconds - time.monotonic()))
            result[f"{seconds}s"] = rss_mib(camo.pgid)
            if seconds == SMAPS_AT:
                grown = Counter(mappings(camo.pgid))
                grown.subtract(idle_maps)
                print(
                    "  grown since idle (MiB):",
                    {k: round(v / 1024, 1) for k, v in grown.items() if abs(v) >= 512},
                )
        result["reliefs"] = camo.metric("camo_memory_reliefs_total")
        statuses = Counter(status for status, _ in answers)
        if statuses != Counter({200: clients}):
            print(f"  answers: {dict(statuses)}")
        return result
    finally:
        camo.kill()


def mappings(pgid: int) -> Counter[str]:
    """Resident KiB by kind of mapping: the C heap, anonymous ones by size, files, stacks."""
    kinds: Counter[str] = Counter()
    for pid in group_pids(pgid):
        kind = ""
        with suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
                fields = line.split()
                if "-" in fields[0] and len(fields) >= 5:
                    start, end = (int(part, 16) for part in fields[0].split("-"))
                    name = fields[5] if len(fields) > 5 else ""
                    if name.startswith("["):
                        kind = name
                    elif name:
                        kind = "files"
                    else:
                        size = (end - start) >> 20
                        kind = (
                            "anon 1 MiB" if size == 1 else f"anon {'<1' if size < 1 else '>1'} MiB"
                        )
                elif fields[0] == "Rss:":
                    kinds[kind] += int(fields[1])
    return kinds


def show_snapshot(path: Path, top: int) -> None:
    """The snapshot's live blocks grouped by traceback, biggest count first."""
    snapshot = tracemalloc.Snapshot.load(str(path))
    small = [trace for trace in snapshot.traces if trace.size <= 512]  # pymalloc's blocks
    print(
        f"  traced live blocks: {len(snapshot.traces)} "
        f"({sum(t.size for t in snapshot.traces):,} bytes), of them <= 512 bytes: "
        f"{len(small)} ({sum(t.size for t in small):,} bytes)"
    )
    for stat in snapshot.statistics("traceback")[:top]:
        print(f"  {stat.count} blocks, {stat.size:,} bytes:")
        for line in stat.traceback.format(limit=25, most_recent_first=True)[:16]:
            print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--trace", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--src", type=Path)
    parser.add_argument("--crowds", type=int, default=1, help="one after another, each run")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="for camo only"
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    if args.src is not None:
        os.environ["PYTHONPATH"] = f"{args.src.resolve()}:{os.environ.get('PYTHONPATH', '')}"
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{machine()}; {args.clients} clients of one 1 MB image, {args.runs} run(s) {env}")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host = ImageHost()
    asyncio.run_coroutine_threadsafe(host.start(), loop).result()
    with tempfile.TemporaryDirectory(prefix="camo-crowd-memory-") as name:
        tmp = Path(name)
        for run in range(1, args.runs + 1):
            trace = None
            if args.trace is not None:
                args.trace.mkdir(parents=True, exist_ok=True)
                trace = (args.trace / f"run-{run}.snapshot").resolve()
            load = os.getloadavg()[0]
            result = crowd(tmp, host, loop, args.clients, trace, args.frames, env, args.crowds)
            idle = result["idle"]
            after = ", ".join(
                f"{seconds} s {result[f'{seconds}s']:.0f} ({result[f'{seconds}s'] / idle:.2f}x)"
                for seconds in AFTER
            )
            print(
                f"run {run} (load {load:.1f}-{os.getloadavg()[0]:.1f}): "
                f"{result['whole']:.0f}/{args.clients} whole; RSS idle {idle:.0f} MiB, "
                f"peak {result['peak']:.0f}; after: {after}; reliefs {result['reliefs']:.0f}"
            )
            if trace is not None and trace.exists():
                show_snapshot(trace, args.top)
                print(Path(f"{trace}.objects").read_text())
                print(Path(f"{trace}.arenas").read_text())
    asyncio.run_coroutine_threadsafe(host.stop(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
