"""Benchmark: a burst over project pages right after a late batch touching a few projects,
this checkout against a reference's, alternating, in-process per run.

    .venv/bin/python bench/stats_web_late.py --reference OTHER_CHECKOUT/src
                                             [--rows 3000000] [--dir /tmp/stats-web-bench]
                                             [--pages 200] [--late 10] [--runs 3] [--seed 1]

The warehouse is :mod:`stats_web`'s (``bench/stats_web.py --rows N --skip
api,crowd,first,stats,publish`` builds it: 5,000 projects, a year of days ending yesterday).
It is copied and opened for loading once (rebuilt there if its rollups are of another
definition: the bench warehouse may be older than the code), and each run copies that and,
in a process of its own whose ``PYTHONPATH`` is the arm's ``src``:

1. renders ``--pages`` project pages (distinct projects picked at random, the same each
   run) under one data version, so their settled parts are kept (:mod:`pythonhosted.
   stats_web.settled`), as a day of visits leaves them;
2. loads, as a publish does, one file: a 5,700-row load of today (``stats_web.result_files``)
   and ``--late`` projects' rows of yesterday (three each), the late batch of a day's first
   hours; its CPU is the load's (DuckDB's threads included);
3. renders the same pages again under the new version, the burst after the publish: each
   page is computed again (it shows today), from its kept parts where the publish did not
   touch them. Printed: the burst's CPU and wall, the parts computed and reused.

The pages' answers would be computed again by either code (they show today's partial day),
so the burst is what the settled parts save. Arms alternate run by run (reference first).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECTS = 5000
HERE = Path(__file__).resolve().parent


def worker(path: Path, load_file: Path, pages: list[str]) -> dict[str, float]:
    """Steps 1-3 of the module doc on the warehouse at ``path`` (a copy), in this process."""
    from prometheus_client import CollectorRegistry, Counter

    from pythonhosted.stats_web import api, settled
    from pythonhosted.stats_web import pages as page_module
    from pythonhosted.stats_web.changes import Changes
    from pythonhosted.stats_web.params import Params
    from pythonhosted.warehouse.access import reading
    from pythonhosted.warehouse.duck import DuckDBWarehouse
    from pythonhosted.warehouse.rollups import VERSION

    end = datetime.now(UTC).date() - timedelta(days=1)
    ctx = api.Context(end, datetime.now(UTC).replace(tzinfo=None, minute=0, second=0), 100)
    registry = CollectorRegistry()
    computed = Counter("computed", "", registry=registry)
    reused = Counter("reused", "", registry=registry)
    parts = settled.Parts(1 << 30, computed, reused)
    changes = Changes()

    def counts() -> tuple[float, float]:
        found = [registry.get_sample_value(f"{name}_total") for name in ("computed", "reused")]
        return found[0] or 0.0, found[1] or 0.0

    def burst() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        with reading(path) as con:
            found = con.execute(f"SELECT version FROM {VERSION}").fetchone()
            assert found is not None
            changes.read(con, int(found[0]))
            for project in pages:
                render = page_module.route(f"/packages/{project}", Params.parse(b""))
                with settled.using(parts, int(found[0]), changes, end):
                    render(con, ctx)
        return 1000 * (time.process_time() - cpu), 1000 * (time.perf_counter() - wall)

    first_cpu, first_wall = burst()
    before = counts()
    db = DuckDBWarehouse(path)
    try:
        started = time.process_time()
        db.load("file_downloads", [("late-batch.json", load_file.read_bytes())])
        load_cpu = 1000 * (time.process_time() - started)
    finally:
        db.close()
    cpu, wall = burst()
    return {
        "first burst CPU ms": first_cpu,
        "first burst wall ms": first_wall,
        "load CPU ms": load_cpu,
        "burst CPU ms": cpu,
        "burst wall ms": wall,
        "parts computed": counts()[0] - before[0],
        "parts reused": counts()[1] - before[1],
    }


def late_load(late: list[str]) -> bytes:
    """A 5,700-row file of today's rows and three rows of yesterday for each of ``late``."""
    sys.path.insert(0, str(HERE))
    import stats_web

    today = datetime.now(UTC).date()
    content = stats_web.result_files(1, 5700)[0]
    rows = content.splitlines(keepends=True)
    extra = []
    for index, project in enumerate(late):
        for row in rows[3 * index : 3 * index + 3]:
            moved = re.sub(rb'"project":"[^"]*"', f'"project":"{project}"'.encode(), row)
            extra.append(moved.replace(b"DAY", str(today - timedelta(days=1)).encode()))
    return content.replace(b"DAY", str(today).encode()) + b"".join(extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="another checkout's src/ directory (required)")
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--dir", default="/tmp/stats-web-bench")
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--late", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        path, load_file, pages = args.worker
        print(json.dumps(worker(Path(path), Path(load_file), json.loads(pages))))
        return
    if not args.reference:
        parser.error("--reference is required")
    sys.path.insert(0, str(HERE))
    from stats_web import cpu_model, load

    source = Path(args.dir) / f"warehouse-{args.rows}-published.duckdb"
    if not source.exists():
        raise SystemExit(f"no warehouse at {source}: build it with bench/stats_web.py first")
    rng = random.Random(args.seed)
    chosen = rng.sample(range(PROJECTS), args.pages)
    pages = [f"project-{n}" for n in chosen]
    late = [f"project-{n}" for n in rng.sample(range(PROJECTS), args.late)]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {source.name}; {load()}")
    print(f"{args.pages} pages; late batch of {late}: {len(set(late) & set(pages))} among them")
    load_file = source.with_name("late-batch.json")
    load_file.write_bytes(late_load(late))
    prepared = source.with_name("late-prepared.duckdb")
    shutil.copyfile(source, prepared)
    from pythonhosted.warehouse.duck import DuckDBWarehouse

    DuckDBWarehouse(prepared).close()  # opened for loading: rebuilt if of another definition
    copy = source.with_name("late-copy.duckdb")
    arms = {"reference": Path(args.reference).resolve(), "this code": HERE.parent / "src"}
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    try:
        for run in range(args.runs):
            for arm, src in arms.items():
                shutil.copyfile(prepared, copy)
                env = {**os.environ, "PYTHONPATH": str(src)}
                command = [sys.executable, __file__, "--worker", str(copy), str(load_file)]
                out = subprocess.run([*command, json.dumps(pages)], env=env, capture_output=True)
                if out.returncode != 0:
                    raise SystemExit(f"{arm}'s run failed: {out.stderr.decode()[-2000:]}")
                found = json.loads(out.stdout)
                results[arm].append(found)
                shown = ", ".join(f"{key} {value:.0f}" for key, value in found.items())
                print(f"  run {run + 1}, {arm}: {shown} ({load()})", flush=True)
    finally:
        for path in (copy, prepared, load_file):
            path.unlink(missing_ok=True)
    print(f"medians of {args.runs} runs:")
    for arm, runs in results.items():
        medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(f"  {arm}: " + ", ".join(f"{key} {value:.0f}" for key, value in medians.items()))
    ratios = [
        new["burst CPU ms"] / ref["burst CPU ms"]
        for ref, new in zip(results["reference"], results["this code"], strict=True)
    ]
    print("burst CPU, this code / reference, per run: " + ", ".join(f"{r:.2f}" for r in ratios))
    print(load())


if __name__ == "__main__":
    main()
