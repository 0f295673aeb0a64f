"""Benchmark: what the stats web's record of each publish's changes costs, with late parts
(:class:`pythonhosted.stats_web.changes.Changes`): a look-up (on the event loop, once per
cached answer served from an older version) and a read of a new version (in a worker thread,
once per publish), at the kept window's size.

    .venv/bin/python bench/changes_lookups.py [--days 100] [--publishes 96] [--late 8]
                                              [--names 1000] [--projects 20000]
                                              [--lookups 200000]

The history: ``--days`` days of ``--publishes`` publishes a day (10,000 versions is the kept
window, :data:`~pythonhosted.stats_web.changes.KEPT`), the first ``--late`` of each day
with a late part naming ``--names`` projects (the bound: the worst case) drawn from
``--projects``; the others bring today's rows only. Read whole once (a reader that starts),
then one more version at a time. Look-ups: answers of random versions in the last day
(most cached answers are recent) and of random projects, reading through yesterday; per
look-up ns, for one project's answers and for answers across projects. The read of one more
version is timed for each of the last day's (CPU, the collector's passes included).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tracemalloc
from datetime import date, timedelta

import duckdb

from pythonhosted.stats_web.changes import ANY, Changes
from pythonhosted.warehouse.rollups import CHANGES, LATE


def history(con: duckdb.DuckDBPyConnection, args: argparse.Namespace, rng: random.Random) -> int:
    """The versions' rows (see the module doc); the last version."""
    con.execute(f"CREATE TABLE {CHANGES} (version BIGINT, first_day DATE, uploads BOOLEAN)")
    con.execute(f"CREATE TABLE {LATE} (version BIGINT, newest_day DATE, projects VARCHAR[])")
    first = date(2026, 1, 1)
    changes, late = [], []
    version = 1
    for offset in range(args.days):
        today = first + timedelta(days=offset)
        for publish in range(args.publishes):
            version += 1
            if publish < args.late:
                named = rng.sample(range(args.projects), args.names)
                changes.append((version, today - timedelta(days=1), False))
                late.append((version, today, [f"project-{n}" for n in named]))
            else:
                changes.append((version, today, False))
    con.executemany(f"INSERT INTO {CHANGES} VALUES (?, ?, ?)", changes)
    con.executemany(f"INSERT INTO {LATE} VALUES (?, ?, ?)", late)
    return version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--publishes", type=int, default=96)
    parser.add_argument("--late", type=int, default=8)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=20000)
    parser.add_argument("--lookups", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(1)
    con = duckdb.connect()
    top = history(con, args, rng)
    changes = Changes()
    changes.read(con, 1)
    day_start = top - args.publishes
    tracemalloc.start()
    cpu = time.process_time()
    changes.read(con, day_start)
    whole = time.process_time() - cpu
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    late_reads, other_reads = [], []
    for version in range(day_start + 1, top + 1):
        cpu = time.process_time()
        changes.read(con, version)
        (late_reads if version - day_start <= args.late else other_reads).append(
            1000 * (time.process_time() - cpu)
        )
    print(
        f"{top - 1} versions, {args.late} a day with {args.names} late names of "
        f"{args.projects} projects: read whole {1000 * whole:.0f} ms ({held / 2**20:.1f} MiB "
        f"held); one more version, median / highest ms: with a late part "
        f"{statistics.median(late_reads):.1f} / {max(late_reads):.1f}, without "
        f"{statistics.median(other_reads):.1f} / {max(other_reads):.1f}"
    )
    yesterday = (date(2026, 1, 1) + timedelta(days=args.days - 2)).toordinal()
    versions = [rng.randrange(top - args.publishes, top) for _ in range(args.lookups)]
    names = [f"project-{rng.randrange(args.projects)}" for _ in range(args.lookups)]
    for label, projects in (("one project's", names), ("across projects", [ANY] * len(names))):
        times = []
        kept = 0
        for _ in range(3):
            started = time.perf_counter_ns()
            for version, project in zip(versions, projects, strict=True):
                kept += changes.kept(version, top, yesterday, False, False, project=project)
            times.append((time.perf_counter_ns() - started) / len(versions))
        print(
            f"  look-up, {label} answer: {statistics.median(times):.0f} ns "
            f"(runs {', '.join(f'{t:.0f}' for t in times)}); kept {kept / 3 / len(versions):.0%}"
        )


if __name__ == "__main__":
    main()
