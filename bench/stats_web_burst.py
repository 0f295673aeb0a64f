"""Benchmark: the stats web right after a publish: a few slow cold answers, a crowd of cheap ones.

    .venv/bin/python bench/stats_web_burst.py --warehouse COPY.duckdb [--slow 8] [--cheap 2000]
                                              [--runs 2] [--busy-loops 2] [--reference SRC]
                                              [--touched today|every]

A publish changes the data version, so every cached answer it changed goes cold at once
(before ``warehouse_changes``, every cached answer); a badge service (shields.io) polling
thousands of badges, browsers revalidating their cached answers and monitors asking
``/_health`` arrive in that moment together with a few expensive questions (a long-tail
project's page over the whole history, a compare of five projects). Each run, per arm
(``--reference``'s server, then this checkout's):

1. ``stats-web serve --workers 1`` on ``--warehouse`` (a copy: the bench writes its data
   version), the pre-warm off (the moment before its round, as for every project outside
   the top 50), answers cached once for the cheap questions and their ETags kept;
2. a publish as the warehouse sees it: the data version bumped by a writer of this process,
   announced as publish announces it (:func:`pythonhosted.warehouse.access.open_writer`),
   the data itself unchanged, so revalidations are answered 304, with what the publish
   changed recorded as a publish records it (``--touched``: ``today``, a daytime publish's
   rows of today; ``every``, a rebuild's, every answer stale); one question asked, so the
   server has read the new version;
3. each on a connection of its own (all connected first): ``--slow`` expensive cold
   questions, and 250 ms later (they are under way) ``--cheap`` cheap ones at once:
   ``/_health`` (a tenth), badges of the 50 most downloaded projects (half: several
   pollers per badge), revalidations of their ``recent`` answers with the ETags of step 1
   (a fifth), and JSON (``recent``, ``overall``) of the top 100 (the rest).

Printed per kind: count, statuses, p50 / p99 / slowest (from sending the request to the last
byte), and the server's CPU for the whole burst. ``--busy-loops`` bounded busy loops run
beside it (the loaded machine); the load average is printed with each line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import httpx

from loadgen import busy_loops, group_cpu_seconds, machine
from pythonhosted.warehouse import rollups
from pythonhosted.warehouse.access import close_writer, open_writer
from pythonhosted.web.server import Bind, wait_for_port
from stats_web import connect_to, launch, one_request

TOP = 50  # badges polled: the pre-warm's count, the projects with the most pollers
JSON_TOP = 100
TAIL = range(4000, 5000)  # long-tail projects (the generator's skew: few downloads each)
SEEN = f"/api/packages/project-{TAIL[-1]}/recent"  # asked once the publish is done
CROWD_AFTER = 0.25  # seconds between the slow questions and the crowd


@dataclass(frozen=True)
class Question:
    kind: str
    path: str
    etag: str | None = None


def slow_questions(count: int) -> list[Question]:
    """Half long-tail project pages over the whole history, half compares of five projects
    over it: the most expensive answers the pages give."""
    found = []
    for n in range(count):
        if n % 2 == 0:
            found.append(
                Question("slow: page, range=all", f"/packages/project-{TAIL[n]}?range=all")
            )
        else:
            names = ",".join(f"project-{TAIL[n + k * 97]}" for k in range(5))
            found.append(Question("slow: compare 5, all", f"/compare?projects={names}&range=all"))
    return found


def cheap_questions(count: int, etags: dict[str, str]) -> list[Question]:
    """The crowd, interleaved kind by kind as pollers arrive."""
    found = []
    for n in range(count):
        share = n % 10
        if share == 0:
            found.append(Question("cheap: /_health", "/_health"))
        elif share <= 5:
            found.append(Question("cheap: badge", f"/badge/project-{n % TOP}.svg"))
        elif share <= 7:
            path = f"/api/packages/project-{n % TOP}/recent"
            found.append(Question("cheap: 304 revalidation", path, etags[path]))
        else:
            route = "recent" if share == 8 else "overall"
            found.append(Question("cheap: JSON", f"/api/packages/project-{n % JSON_TOP}/{route}"))
    return found


def revalidated_paths() -> list[str]:
    return [f"/api/packages/project-{n}/recent" for n in range(TOP)]


def load() -> str:
    return "load " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


@contextmanager
def server(warehouse: Path, src: str | None, max_pending: int) -> Iterator[tuple[int, str]]:
    """``stats-web serve --workers 1`` of this checkout or of ``src`` (``max_pending``: 0 for
    the default): (its PID, base URL)."""
    settings = {"PYTHONHOSTED_STATS_WEB__PREWARM_PROJECTS": "0"}
    if max_pending:
        settings["PYTHONHOSTED_STATS_WEB__MAX_PENDING"] = str(max_pending)
    process, bind = launch(warehouse, src, settings)
    try:
        wait_for_port(bind, timeout=120)
        yield process.pid, bind.url()
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=60)


def warm(base: str) -> dict[str, str]:
    """Every cheap answer asked once (cached, as between publishes): the revalidated ones'
    ETags."""
    etags = {}
    with httpx.Client(base_url=base, timeout=120) as client:
        for question in cheap_questions(10 * JSON_TOP, dict.fromkeys(revalidated_paths(), "")):
            answer = client.get(question.path)
            answer.raise_for_status()
            etags[question.path] = answer.headers.get("etag", "")
    return etags


def publish(warehouse: Path, touched: date) -> None:
    """The data version bumped as a publish's commit bumps it, with the first day it touched
    (the rows unchanged)."""
    con = open_writer(warehouse)
    try:
        con.execute("BEGIN TRANSACTION")
        rollups.ensure(con)  # a warehouse made before warehouse_changes gets the table
        rollups.bump(con, first_day=touched, uploads=False)
        con.execute("COMMIT")
    finally:
        close_writer(warehouse, con)


async def _ask(bind: Bind, question: Question, go: asyncio.Event) -> tuple[int, float]:
    """One request on a connection of its own, sent once ``go`` is set."""
    connection = await connect_to(bind)
    await go.wait()
    extra = f"If-None-Match: {question.etag}\r\n" if question.etag else ""
    return await one_request(connection, question.path, extra)


async def _burst(base: str, slow: list[Question], cheap: list[Question]) -> list[tuple[int, float]]:
    """Every question connected first; the slow ones asked, and the cheap ones
    :data:`CROWD_AFTER` later, so the slow ones are under way when the crowd comes."""
    bind = Bind.parse(base.removeprefix("http://"))
    first, then = asyncio.Event(), asyncio.Event()
    asking = [asyncio.create_task(_ask(bind, q, first)) for q in slow]
    asking += [asyncio.create_task(_ask(bind, q, then)) for q in cheap]
    await asyncio.sleep(2)  # every connection made (they wait for their event)
    first.set()
    await asyncio.sleep(CROWD_AFTER)
    then.set()
    return list(await asyncio.gather(*asking))


def _ms(values: list[float], share: float) -> str:
    ordered = sorted(values)
    return f"{1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]:,.0f}"


def burst(warehouse: Path, src: str | None, label: str, args: argparse.Namespace) -> None:
    with server(warehouse, src, args.max_pending) as (pid, base):
        etags = warm(base)
        slow, cheap = slow_questions(args.slow), cheap_questions(args.cheap, etags)
        questions = slow + cheap
        touched = datetime.now(UTC).date() if args.touched == "today" else rollups.EVERY_DAY
        publish(warehouse, touched)
        # the new version read (every request waits for that one read), so the slow
        # questions are under way when the crowd comes, not admitted in its midst
        httpx.get(base + SEEN, timeout=120).raise_for_status()
        before = group_cpu_seconds(pid)
        started = time.perf_counter()
        answers = asyncio.run(_burst(base, slow, cheap))
        wall = time.perf_counter() - started - 2
        used = group_cpu_seconds(pid) - before
    print(f"  {label}: {len(questions)} at once, {wall:.1f} s, server CPU {used:.2f} s ({load()})")
    by_kind: dict[str, list[tuple[int, float]]] = {}
    for question, answer in zip(questions, answers, strict=True):
        by_kind.setdefault(question.kind, []).append(answer)
    for kind, found in by_kind.items():
        times = [t for _, t in found]
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(Counter(s for s, _ in found).items()))
        print(
            f"    {kind:<26} {len(found):5d}  p50 {_ms(times, 0.5):>6} ms  "
            f"p99 {_ms(times, 0.99):>6} ms  max {_ms(times, 1.0):>6} ms  ({statuses})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="a copy: it is written")
    parser.add_argument("--slow", type=int, default=8)
    parser.add_argument("--cheap", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--busy-loops", type=int, default=2)
    parser.add_argument("--max-pending", type=int, default=0, help="0: the default setting's")
    parser.add_argument("--reference", help="another checkout's src/: its server goes first")
    parser.add_argument(
        "--touched", choices=("today", "every"), default="today", help="the publish's first day"
    )
    args = parser.parse_args()
    if not re.fullmatch(r"[\w.-]+\.duckdb", args.warehouse.name) or not args.warehouse.is_file():
        sys.exit(f"--warehouse: no DuckDB file at {args.warehouse}")
    arms = [("reference", args.reference)] if args.reference else []
    arms.append(("this checkout", None))
    print(machine())
    with busy_loops(args.busy_loops, seconds=900):
        for run in range(args.runs):
            for label, src in arms:
                burst(args.warehouse, src, f"run {run + 1}, {label}", args)
    print(load())


if __name__ == "__main__":
    main()
