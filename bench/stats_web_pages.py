"""Benchmark: a project page's first render (cold), where its time goes, and its render again
after a publish of today's rows (its settled parts kept), in-process.

    .venv/bin/python bench/stats_web_pages.py [--rows 8000000] [--dir /tmp/stats-web-bench]
                                              [--projects 200] [--runs 2] [--seed 1]

The warehouse is :mod:`stats_web`'s (``bench/stats_web.py --rows N --skip
api,crowd,first,stats,publish`` builds it: 5,000 projects, a year of days laid out as daily
publishes leave them). ``--projects`` projects are picked at random among the 5,000, as
the ``page-cold`` case of ``bench/stats_web.py`` picks them: projects are ``floor(5000 *
u^4)``, so most are the long tail (project-2500 has ~0.003 % of the downloads).

Per project, on one connection (:func:`pythonhosted.warehouse.access.reading`), one at a
time, each run in a new random order:

1. *cold*: the page rendered as a visitor's first request after a publish that touched a
   complete day: no settled part kept (:mod:`pythonhosted.stats_web.settled`), every query
   run;
2. its steps apart, the same calls the page makes: ``known``, the summary's settled part,
   the days after the last complete one, the latest release, the breakdowns; and the
   render of the template (the cold page less its queries);
3. *after a publish of today's rows*: the page rendered again with its settled parts kept
   (the bench warehouse's year ends yesterday, so the days after it are empty: the query
   still looks for them in the open days' rollup rows, which a day's publishes leave few).

Printed per case: p50 and p99 of wall time and of process CPU (DuckDB's threads included),
and the load average before and after. The spec's target is p99 < 100 ms for a page.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from prometheus_client import CollectorRegistry, Counter

from pythonhosted.stats_web import api, data, pages, settled
from pythonhosted.stats_web.changes import Changes
from pythonhosted.stats_web.params import Params
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.stats import Filters
from stats_web import cpu_model, load

PROJECTS = 5000


def measured(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and process CPU of one call, in ms."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return 1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def parts_store() -> settled.Parts:
    registry = CollectorRegistry()
    return settled.Parts(
        1 << 30,
        Counter("computed", "", registry=registry),
        Counter("reused", "", registry=registry),
    )


def cases(
    con: duckdb.DuckDBPyConnection, project: str, run: int, ctx: api.Context
) -> dict[str, tuple[float, float]]:
    """Wall and CPU of each case for ``project`` (see the module doc)."""
    end = ctx.end
    start = end - timedelta(days=89)  # the page's default range
    filters = Filters(mirrors=False, ci=False)  # the page's defaults
    dimensions = ["", *pages.BREAKDOWNS]
    render = pages.route(f"/packages/{project}", Params.parse(b""))
    found = {}
    with settled.using(parts_store(), run, Changes(), end):
        found["cold page"] = measured(lambda: render(con, ctx))
        found["page after a publish of today's rows"] = measured(lambda: render(con, ctx))
    steps: dict[str, Callable[[], object]] = {
        "  known": lambda: data.known(con, project),
        "  summary, settled part": lambda: data._summary(con, project, end, filters, False),
        "  summary, days after": lambda: data._after(con, project, end, filters),
        "  latest release": lambda: data.latest_release(con, project),
        "  breakdowns": lambda: data._breakdowns(
            con, project, dimensions, "day", start, end, filters, 5, 100
        ),
    }
    for step, call in steps.items():
        found[step] = measured(call)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8_000_000)
    parser.add_argument("--dir", default="/tmp/stats-web-bench")
    parser.add_argument("--projects", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    path = Path(args.dir) / f"warehouse-{args.rows}-published.duckdb"
    if not path.exists():
        raise SystemExit(f"no warehouse at {path}: build it with bench/stats_web.py first")
    end = datetime.now(UTC).date() - timedelta(days=1)
    ctx = api.Context(end, datetime.now(UTC).replace(tzinfo=None, minute=0, second=0), 100)
    rng = random.Random(args.seed)
    projects = [f"project-{rng.randrange(PROJECTS)}" for _ in range(args.projects)]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {path.name}; {load()}")
    times: dict[str, list[tuple[float, float]]] = {}
    with reading(path) as con:
        for run in range(args.runs):
            order = projects[:]
            rng.shuffle(order)
            for project in order:
                for case, took in cases(con, project, run, ctx).items():
                    times.setdefault(case, []).append(took)
            print(f"  run {run + 1} done ({load()})", flush=True)
    print(f"{len(projects)} projects x {args.runs} runs; ms, p50 / p99 (wall; CPU):")
    for case, found in times.items():
        wall = [w for w, _ in found]
        cpu = [c for _, c in found]
        print(
            f"  {case:<40} {statistics.median(wall):7.1f} / {percentile(wall, 0.99):7.1f}"
            f"   ({statistics.median(cpu):6.1f} / {percentile(cpu, 0.99):6.1f})"
        )
    print(load())


if __name__ == "__main__":
    main()
