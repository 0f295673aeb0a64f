"""Benchmark: handing stream slots to a long queue of waiters (``web/streams.py``).

    .venv/bin/python bench/stream_slots.py [--waiters 1000,10000,30000] [--reference OTHER/src]

One pool of one slot, held; ``N`` requests queue for it, then the slot is given back and
each waiter takes it and gives it back in turn. Prints the CPU (``time.process_time``) of
the handovers for each ``N``, for this checkout and, with ``--reference`` (another
checkout's ``src/``), for that one in the same run, alternating. Linear is the goal: a queue
whose every exit scanned it for the leaver made 30,000 waiters cost 10.9 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, sys, time
from pythonhosted.web.streams import StreamSlots

async def handovers(waiters: int) -> float:
    pool = StreamSlots(1)
    assert pool.take_now()

    async def one() -> None:
        await pool.take(None)
        pool.give_back()

    tasks = [asyncio.create_task(one()) for _ in range(waiters)]
    await asyncio.sleep(0)
    started = time.process_time()
    pool.give_back()
    await asyncio.gather(*tasks)
    return time.process_time() - started

print(asyncio.run(handovers(int(sys.argv[1]))))
"""


def cpu(src: Path, waiters: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(waiters)], env=env, capture_output=True, check=True
    )
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiters", default="1000,10000,30000")
    parser.add_argument("--reference", type=Path)
    args = parser.parse_args()
    ours = Path(__file__).resolve().parent.parent / "src"
    print(f"load average: {os.getloadavg()[0]:.1f}")
    for waiters in map(int, args.waiters.split(",")):
        line = f"{waiters:>7} waiters: {cpu(ours, waiters):.3f} s CPU"
        if args.reference is not None:
            line += f"  reference {cpu(args.reference, waiters):.3f} s"
        print(line)


if __name__ == "__main__":
    main()
