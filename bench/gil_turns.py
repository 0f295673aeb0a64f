"""Benchmark: the event loop's lag while N threads compute answers beside it, with and
without :func:`pythonhosted.threads.computing`'s turns, at two switch intervals.

Each thread computes answers in a loop as the stats web does: a DuckDB query (which lets the
GIL go; 2M rows, grouped), then Python over its rows (dicts, JSON), inside a turn or not. The
loop runs a ticker that sleeps 2 ms at a time and records how late each turn comes back.
Printed per case: the loop's turns, p50/p99/worst lag, answers per second and per CPU second.

    .venv/bin/python bench/gil_turns.py [--threads 16] [--seconds 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import duckdb
import orjson

from loadgen import machine
from pythonhosted import threads

TICK = 0.002


def answer(
    database: duckdb.DuckDBPyConnection, turn: Callable[[], AbstractContextManager[None]]
) -> None:
    con = database.cursor()
    try:
        rows = con.execute("SELECT p, sum(d) FROM t WHERE p < 50 GROUP BY p").fetchall()
        with turn():
            document = [
                {"project": f"p{p}", "downloads": n, "period": "2021-01", "rank": i}
                for i, (p, n) in enumerate(rows * 40)
            ]
            orjson.dumps(document)
    finally:
        con.close()


async def ticker(seconds: float) -> list[float]:
    loop = asyncio.get_running_loop()
    lags = []
    end = loop.time() + seconds
    while loop.time() < end:
        began = loop.time()
        await asyncio.sleep(TICK)
        lags.append(loop.time() - began - TICK)
    return sorted(lags)


def case(database: duckdb.DuckDBPyConnection, count: int, interval: float, turns: bool,
         seconds: float) -> str:  # fmt: skip
    sys.setswitchinterval(interval)
    turn = threads.computing if turns else contextlib.nullcontext
    stop = threading.Event()
    done: list[int] = []

    def work() -> None:
        answered = 0
        while not stop.is_set():
            answer(database, turn)
            answered += 1
        done.append(answered)

    workers = [threading.Thread(target=work) for _ in range(count)]
    cpu = time.process_time()
    for worker in workers:
        worker.start()
    try:
        lags = asyncio.run(ticker(seconds))
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    cpu = time.process_time() - cpu
    p50, p99 = lags[len(lags) // 2], lags[int(len(lags) * 0.99)]
    name = f"{threads.PYTHON_AT_ONCE} turns" if turns else "no turns"
    return (
        f"  {count} threads, {name:8}, switch {interval * 1000:3.1f} ms: loop turns "
        f"{len(lags):5d}, lag p50 {p50 * 1000:5.1f} p99 {p99 * 1000:6.1f} worst "
        f"{lags[-1] * 1000:6.1f} ms; answers {sum(done) / seconds:6.1f}/s, "
        f"{sum(done) / cpu:6.1f}/CPU s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    database = duckdb.connect()
    database.execute("CREATE TABLE t AS SELECT range % 1000 AS p, range AS d FROM range(2000000)")
    print(machine())
    for _ in range(args.rounds):
        for interval, turns in ((0.005, False), (0.005, True), (0.001, False)):
            print(case(database, args.threads, interval, turns, args.seconds), flush=True)


if __name__ == "__main__":
    main()
