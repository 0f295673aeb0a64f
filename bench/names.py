"""Benchmark: the two questions about project names that used to read every stored name.

    .venv/bin/python bench/names.py [--names 300000] [--stored 1000000] [--flood 1000]
                                    [--dir /tmp/names-bench] [--reference OTHER/src]
                                    [--skip close,record,flood]

1. ``close``: the close names of an unknown project ("did you mean"), in-process over a
   warehouse of ``--names`` project names (``name-<n>-<word>``), for 200 distinct typos of
   them: the deletion-neighbourhood index (:mod:`pythonhosted.warehouse.suggestions`) against
   the reference, Jaro-Winkler against every name in one statement (what it replaced),
   alternating; CPU per lookup (``time.process_time``: the process's CPU, DuckDB's threads
   included) and rows read (DuckDB's profiler).
2. ``record``: a load recording its spellings (:mod:`pythonhosted.warehouse.spellings`)
   into a names table of ``--stored`` names, for loads of 60, 2,000 and 5,000 distinct
   spellings (5 new among them), against the reference statement (``INSERT ... WHERE
   project NOT IN (SELECT name FROM project_names)``), each in a transaction rolled back,
   alternating, 5 runs each; CPU per load and rows read.
3. ``flood``: ``stats-web serve --workers 1`` over the ``close`` warehouse, ``--flood``
   requests for distinct unknown names at once (one connection each), while ``/_health``
   is asked every 20 ms: how long the flood takes, the server's CPU per request, every
   answer's status, and ``/_health``'s median and slowest answer during it. With ``--reference``
   (another checkout's ``src/``) its server answers the same flood too.

The machine is shared: the load average is printed with each part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import aiohttp
import duckdb

from pythonhosted.warehouse import rollups, spellings, suggestions
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.web.server import wait_for_port
from stats_web import launch

WORDS = ["requests", "numpy", "django", "flask", "pytest", "sphinx", "boto", "click"]
FIRST_ROWS = """
INSERT INTO file_downloads (timestamp, country_code, url, project)
SELECT TIMESTAMP '2025-01-01' + to_seconds(i), 'US', '/p/' || i, 'name-' || i || '-requests'
FROM range(1000) AS t(i)
"""
EVERY_NAME = (
    "SELECT normalized, jaro_winkler_similarity(normalized, ?) AS score "
    f"FROM (SELECT DISTINCT normalized FROM {rollups.PROJECTS}) WHERE score >= 0.8 "
    "ORDER BY score DESC, normalized LIMIT 3"
)
OLD_RECORD = (
    f"INSERT INTO {rollups.PROJECTS} SELECT project, {rollups.NORMALIZED} "
    "FROM (SELECT DISTINCT unnest(?) AS project) "
    f"WHERE project NOT IN (SELECT name FROM {rollups.PROJECTS})"
)


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def name(n: int) -> str:
    return f"name-{n}-{WORDS[n % len(WORDS)]}"


def typo(n: int) -> str:
    """A one-edit typo in the word of a stored name: a letter dropped, doubled, or two
    swapped (in the number it would often be another stored name)."""
    base = name(n)
    at = len(base) - 3 - n % 2
    kind = n % 3
    if kind == 0:
        return base[:at] + base[at + 1 :]
    if kind == 1:
        return base[:at] + base[at] + base[at:]
    return base[:at] + base[at + 1] + base[at] + base[at + 2 :]


def build(path: Path, names: int) -> None:
    """A warehouse with a few downloads (the stats web answers only then) and ``names``
    project names, their variants made as for a warehouse from before them."""
    if path.exists():
        print(f"reusing {path}")
        return
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    warehouse = DuckDBWarehouse(partial)
    warehouse.con.execute(FIRST_ROWS)
    warehouse.rebuild_rollups()
    names_sql = " || ".join(["'name-' || n || '-'", f"{WORDS!r}[1 + n % {len(WORDS)}]"])
    warehouse.con.execute(
        f"INSERT INTO {rollups.PROJECTS} SELECT {names_sql}, {names_sql} "
        f"FROM range(1000, {names}) AS t(n)"
    )
    warehouse.con.execute(f"DROP TABLE {suggestions.VARIANTS}")
    warehouse.close()
    started = time.perf_counter()
    DuckDBWarehouse(partial).close()
    print(f"variants of {names:,} names made in {time.perf_counter() - started:.1f} s")
    partial.rename(path)
    print(f"file {path.stat().st_size / 1e6:.0f} MB")


class Profiled:
    """A connection that adds up the rows DuckDB read in each statement (its profiler), for
    code that calls ``execute`` and fetches."""

    def __init__(self, con: duckdb.DuckDBPyConnection, profile: Path) -> None:
        self.con = con
        self.profile = profile
        self.total = 0
        con.execute("PRAGMA enable_profiling = 'json'")
        con.execute("SET profiling_coverage = 'ALL'")  # INSERTs too
        con.execute(f"SET profiling_output = '{profile}'")

    def rows(self) -> int:
        """Rows the statement run last read."""
        return int(json.loads(self.profile.read_text())["query"]["total_rows_scanned"])

    def execute(self, sql: str, params: object = None) -> Profiled:
        self.con.execute(sql, params)
        self.total += self.rows()
        return self

    def fetchall(self) -> list[Any]:
        found = self.con.fetchall()
        self.total += self.rows()
        return found


def cpu(call: Callable[[], object]) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


def close(path: Path, directory: Path) -> None:
    print(f"\n== close names, {load()}")
    con = duckdb.connect(str(path), read_only=True)
    profiled = Profiled(con, directory / "close.json")
    count = con.execute(f"SELECT count(*) FROM {rollups.PROJECTS}").fetchone()
    typos = [typo(n) for n in range(1000, 1000 + 200 * 1499, 1499)]
    new_cpu, old_cpu, new_rows, old_rows, same = [], [], [], [], 0
    first = {"index": 0, "every name": 0}  # the typo's own name suggested first
    for n, word in zip(range(1000, 1000 + 200 * 1499, 1499), typos, strict=True):
        started = time.process_time()
        new_found = suggestions.close_names(con, word)
        new_cpu.append(time.process_time() - started)
        new_rows.append(profiled.rows())
        started = time.process_time()
        old_found = [row[0] for row in con.execute(EVERY_NAME, [word]).fetchall()]
        old_cpu.append(time.process_time() - started)
        old_rows.append(profiled.rows())
        same += new_found == old_found
        first["index"] += new_found[:1] == [name(n)]
        first["every name"] += old_found[:1] == [name(n)]
    con.close()
    new, old = statistics.median(new_cpu), statistics.median(old_cpu)
    print(f"{count[0] if count else 0:,} names, {len(typos)} typos, {load()}")
    print(f"index:      median {1e3 * new:7.2f} ms CPU, max rows read {max(new_rows):,}")
    print(f"every name: median {1e3 * old:7.2f} ms CPU, max rows read {max(old_rows):,}")
    print(f"ratio {old / new:.0f}x less CPU; same three suggestions for {same} of {len(typos)}")
    print(f"the typo's own name first: {first}")


def record(directory: Path, stored: int) -> None:
    print(f"\n== recording a load's spellings among {stored:,} names, {load()}")
    path = directory / "record.duckdb"
    path.unlink(missing_ok=True)
    warehouse = DuckDBWarehouse(path)
    con = warehouse.con
    con.execute(
        f"INSERT INTO {rollups.PROJECTS} SELECT 'Project_' || n, 'project-' || n "
        f"FROM range({stored}) AS t(n)"
    )
    con.execute("CHECKPOINT")
    profiled = Profiled(con, directory / "record.json")
    counting = cast(duckdb.DuckDBPyConnection, profiled)
    for distinct in (60, 2000, 5000):
        names = [f"Project_{n * 97}" for n in range(distinct - 5)]
        names += [f"Fresh_{n}" for n in range(5)]
        runs: dict[str, Callable[[], object]] = {
            "probe": partial(spellings.record, counting, rollups.PROJECTS, names),
            "anti-join": partial(counting.execute, OLD_RECORD, [names]),
        }
        timings: dict[str, list[float]] = {label: [] for label in runs}
        rows: dict[str, int] = {}
        for _ in range(5):
            for label, run in runs.items():
                con.execute("BEGIN")
                profiled.total = 0
                timings[label].append(cpu(run))
                rows[label] = profiled.total
                con.execute("ROLLBACK")
        new, old = statistics.median(timings["probe"]), statistics.median(timings["anti-join"])
        print(
            f"{distinct:5,} spellings: probe {1e3 * new:6.1f} ms CPU ({rows['probe']:,} rows "
            f"read), anti-join {1e3 * old:6.1f} ms CPU ({rows['anti-join']:,} rows read); "
            f"ratio {old / new:.2f}"
        )
    warehouse.close()
    path.unlink()


async def _flood(base: str, paths: list[str]) -> tuple[list[int], float, list[float]]:
    """Statuses of ``paths`` asked at once, the flood's seconds, and the seconds of each
    /_health answer during it."""
    health: list[float] = []
    done = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=len(paths) + 1)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(path: str) -> int:
            async with session.get(base + path) as response:
                body = await response.json()
                assert "error" in body and "suggestions" in body, body
                return response.status

        async def probe() -> None:
            async with aiohttp.ClientSession() as alone:
                while not done.is_set():
                    started = time.perf_counter()
                    async with alone.get(base + "/_health") as response:
                        assert response.status == 200
                        await response.read()
                    health.append(time.perf_counter() - started)
                    await asyncio.sleep(0.02)

        prober = asyncio.create_task(probe())
        started = time.perf_counter()
        statuses = await asyncio.gather(*(one(path) for path in paths))
        elapsed = time.perf_counter() - started
        done.set()
        await prober
    return list(statuses), elapsed, health


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood(path: Path, count: int, src: str | None, label: str, salt: str) -> None:
    server, bind = launch(path, src, {})
    try:
        wait_for_port(bind, timeout=60)
        paths = [f"/api/packages/{typo(n)}-{salt}/recent" for n in range(1000, 1000 + count)]
        before = cpu_seconds(server.pid)
        statuses, elapsed, health = asyncio.run(_flood(bind.url(), paths))
        used = cpu_seconds(server.pid) - before
        codes = {code: statuses.count(code) for code in sorted(set(statuses))}
        print(
            f"{label}: {count} unknown names at once answered in {elapsed:.1f} s, "
            f"{1e3 * used / count:.1f} ms server CPU per request, statuses {codes}; "
            f"/_health median {1e3 * statistics.median(health):.0f} ms, slowest "
            f"{1e3 * max(health):.0f} ms of {len(health)} ({load()})"
        )
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--names", type=int, default=300_000)
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--flood", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/names-bench"))
    parser.add_argument("--reference", help="another checkout's src/ for the flood")
    parser.add_argument("--skip", default="")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    args.dir.mkdir(parents=True, exist_ok=True)
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "unknown",
    )  # fmt: skip
    print(f"{model}, {os.cpu_count()} cores, DuckDB {duckdb.__version__}, {load()}")
    path = args.dir / f"names-{args.names}.duckdb"
    if not {"close", "flood"} <= skip:
        build(path, args.names)
    if "close" not in skip:
        close(path, args.dir)
    if "record" not in skip:
        record(args.dir, args.stored)
    if "flood" not in skip:
        print(f"\n== flood, {load()}")
        for round_ in range(2 if args.reference else 1):
            flood(path, args.flood, None, "this checkout", f"a{round_}")
            if args.reference:
                flood(path, args.flood, args.reference, "reference", f"b{round_}")


if __name__ == "__main__":
    main()
