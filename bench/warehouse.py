"""Benchmark: warehouse load rate and a 30-day by-installer breakdown, DuckDB and ClickHouse.

    .venv/bin/python bench/warehouse.py [--load-lines 500000] [--load-runs 3] [--rows 10000000]
                                        [--engines duckdb,chdb]

1. Load: NDJSON result files made by ingest's converter from the bench/linehaul.py corpus,
   loaded with :meth:`DuckDBWarehouse.load` (their contents, as publish reads them from a
   cloud results store) and with :meth:`DuckDBWarehouse.load_local` (the same files on disk
   with ingest's row counts, as in a local results store, the embedded default); one
   transaction each, bookkeeping included, into a new file, ``--load-runs`` times; rows/s
   of wall time, and the process's CPU seconds (all threads), which vary less than wall time
   on a shared machine. Then the median and range of
   the runs after the first (which pays for first touching the spool's memory), with the
   1-minute load average before and after, as other jobs on the machine move wall times most.
2. Query: ``--rows`` rows generated inside DuckDB with SQL (2,000 projects, Zipf-ish, 90
   days, installers/pythons from a small set), then the stats breakdown
   ``pythonhosted stats project-1 --days 30 --by installer``; best of 5 wall times. Since
   the daily rollups (docs/stats-web.md) it reads them, not the rows; bench/stats_web.py
   compares the two. The same question is also asked of the rows (``--by installer python``,
   which no rollup answers: one GROUP BY over the project's rows).

ClickHouse runs in process (chDB, ``chdb://``) with the same steps in the same run: loads
through :class:`ClickHouseWarehouse` (one deduplicated insert per file, the rollups' view
fed by it), and ``--rows`` rows generated in ClickHouse with SQL of the same shape (its
``numbers()`` for DuckDB's ``range()``, its ``rand()`` for ``random()``), inserted with the
rollups' materialized view attached, so the generation time includes keeping the rollups.
Timings are wall time and CPU seconds of this process, so run it on a quiet machine and
read the load average printed beside them.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from pythonhosted.linehaul.batch import convert
from pythonhosted.warehouse import LocalFile, Warehouse
from pythonhosted.warehouse.clickhouse import stats as clickhouse_stats
from pythonhosted.warehouse.clickhouse.engines import ChdbEngine
from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.stats import breakdown

_spec = importlib.util.spec_from_file_location("corpus", Path(__file__).with_name("linehaul.py"))
assert _spec is not None and _spec.loader is not None
corpus_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_module)

GENERATE = """
INSERT INTO file_downloads
    (timestamp, country_code, url, project, file, details, tls_protocol, tls_cipher)
SELECT
    TIMESTAMP '2021-01-01' + to_seconds(CAST(i * 90 * 86400 // {rows} AS BIGINT)),
    'US',
    '/packages/x/' || i,
    'project-' || CAST(floor(pow(random(), 3) * 2000) AS INTEGER),
    {'filename': 'f.whl', 'project': 'p', 'version': '1.0', 'type': 'bdist_wheel'},
    {'installer': {'name': ['pip', 'uv', 'poetry', 'pdm', 'Browser'][1 + i % 5],
                    'version': '24.0', 'subcommand': NULL},
     'python': ['3.8.18', '3.11.7', '3.12.1', '3.13.0'][1 + i % 4],
     'implementation': {'name': 'CPython', 'version': '3.12.1'},
     'distro': NULL, 'system': {'name': 'Linux', 'release': '6.5'},
     'cpu': 'x86_64', 'openssl_version': NULL, 'setuptools_version': NULL,
     'rustc_version': NULL, 'ci': i % 3 = 0},
    'TLSv1.3', 'TLS_AES_128_GCM_SHA256'
FROM range({rows}) t(i)
"""
# The table's own last column (`response`, our files edge's facts) stays null, as in rows of
# reference log lines.
# The same rows in ClickHouse's SQL (arrays are 1-based there too).
GENERATE_CLICKHOUSE = """
INSERT INTO file_downloads
    (timestamp, country_code, url, project, file, details, tls_protocol, tls_cipher)
SELECT
    toDateTime64('2021-01-01 00:00:00', 6, 'UTC') + intDiv(number * 90 * 86400, {rows}),
    'US',
    concat('/packages/x/', toString(number)),
    concat('project-', toString(toUInt32(floor(pow(rand() / 4294967296.0, 3) * 2000)))),
    tuple('f.whl', 'p', '1.0', 'bdist_wheel'),
    tuple(tuple(['pip', 'uv', 'poetry', 'pdm', 'Browser'][1 + number % 5], '24.0', NULL),
          ['3.8.18', '3.11.7', '3.12.1', '3.13.0'][1 + number % 4],
          tuple('CPython', '3.12.1'), tuple(NULL, NULL, NULL, tuple(NULL, NULL)),
          tuple('Linux', '6.5'), 'x86_64', NULL, NULL, NULL, number % 3 = 0),
    'TLSv1.3', 'TLS_AES_128_GCM_SHA256'
FROM numbers({rows})
"""


def load_files(lines: int) -> list[tuple[str, bytes]]:
    """The corpus as ingest's result files, 100k lines each."""
    text = corpus_module.corpus(lines, 1)
    chunk = 100_000
    files = []
    for start in range(0, len(text), chunk):
        data = gzip.compress(("\n".join(text[start : start + chunk]) + "\n").encode(), 1)
        files.append((f"downloads-{start}.json", convert(data).downloads))
    return files


def open_engine(engine: str, path: Path) -> Warehouse:
    if engine == "chdb":
        return ClickHouseWarehouse(ChdbEngine(path))
    return DuckDBWarehouse(path)


def load_rate(
    files: list[tuple[str, bytes]], local: list[LocalFile] | None, path: Path, engine: str
) -> tuple[int, float, float]:
    """Rows loaded, wall seconds and CPU seconds of one load into a new warehouse: of the
    files' contents, or (``local``) of the same files lying on disk."""
    warehouse = open_engine(engine, path)
    began, cpu = time.perf_counter(), time.process_time()
    if local is None:
        result = warehouse.load("file_downloads", files)
    else:
        result = warehouse.load_local("file_downloads", local)
    spent, cpu = time.perf_counter() - began, time.process_time() - cpu
    warehouse.close()
    return result.rows, spent, cpu


def on_disk(files: list[tuple[str, bytes]], folder: Path) -> list[LocalFile]:
    """The files as a local results store holds them: on disk, with ingest's row counts."""
    folder.mkdir()
    local = []
    for name, data in files:
        (folder / name).write_bytes(data)
        local.append(LocalFile(name, folder / name, data.count(b"\n")))
    return local


def best_of_5(question: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        question()
        best = min(best, time.perf_counter() - began)
    return best


START, END = date(2021, 2, 1), date(2021, 3, 2)


def query_time(rows: int, workdir: Path) -> tuple[tuple[float, float], float, float]:
    """DuckDB: wall and CPU seconds to generate ``rows`` (and rebuild the rollups), the best
    30-day by-installer breakdown from the rollups, and the best by installer and python
    (rows)."""
    path = workdir / "query.duckdb"
    warehouse = DuckDBWarehouse(path)
    began, cpu = time.perf_counter(), time.process_time()
    warehouse.con.execute(GENERATE.replace("{rows}", str(rows)))
    warehouse.rebuild_rollups()  # rows made by SQL, not loads: the rollups are made after
    generated = (time.perf_counter() - began, time.process_time() - cpu)
    warehouse.close()
    rollup = best_of_5(lambda: breakdown(path, "project-1", ["installer"], START, END))
    scan = best_of_5(lambda: breakdown(path, "project-1", ["installer", "python"], START, END))
    return generated, rollup, scan


def clickhouse_query_time(rows: int, workdir: Path) -> tuple[tuple[float, float], float, float]:
    """:func:`query_time` of chDB (the rollups' view fed during the generation)."""
    warehouse = ClickHouseWarehouse(ChdbEngine(workdir / "query-ch"))
    engine = warehouse.engine
    try:
        began, cpu = time.perf_counter(), time.process_time()
        engine.command(GENERATE_CLICKHOUSE.replace("{rows}", str(rows)))
        generated = (time.perf_counter() - began, time.process_time() - cpu)

        def ask(fields: list[str]) -> object:
            return clickhouse_stats.breakdown(engine, "project-1", fields, START, END)

        return (
            generated,
            best_of_5(lambda: ask(["installer"])),
            best_of_5(lambda: ask(["installer", "python"])),
        )
    finally:
        warehouse.close()


def main() -> None:
    flags = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    flags.add_argument("--load-lines", type=int, default=500_000)
    flags.add_argument("--load-runs", type=int, default=3)
    flags.add_argument("--rows", type=int, default=10_000_000)
    flags.add_argument("--engines", default="duckdb,chdb", help="duckdb and/or chdb, in order")
    args = flags.parse_args()
    engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    print(f"machine: {corpus_module._machine()}; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        files = load_files(args.load_lines)
        local = on_disk(files, Path(tmp) / "results")
        medians: dict[tuple[str, str], float] = {}
        for engine in engines:
            for label, where in (("contents", None), ("in place", local)):
                before = os.getloadavg()[0]
                runs = []
                for run in range(args.load_runs):
                    target = Path(tmp) / f"load-{engine}-{label}-{run}"
                    rows, spent, cpu = load_rate(files, where, target, engine)
                    runs.append((rows / spent, cpu))
                    print(
                        f"{engine} load {label} {run + 1}: {rows:,} rows in {spent:.2f} s = "
                        f"{rows / spent:,.0f} rows/s ({cpu:.2f} CPU s)"
                    )
                later = runs[1:] or runs
                rates, cpus = [rate for rate, _ in later], [cpu for _, cpu in later]
                medians[engine, label] = statistics.median(rates)
                print(
                    f"{engine} loads {label} {len(runs) - len(later) + 1}-{len(runs)}: median "
                    f"{statistics.median(rates):,.0f} rows/s ({min(rates):,.0f}-{max(rates):,.0f}),"
                    f" {statistics.median(cpus):.2f} CPU s ({min(cpus):.2f}-{max(cpus):.2f}); "
                    f"load average {before:.2f} -> {os.getloadavg()[0]:.2f}"
                )
        if {"duckdb", "chdb"} <= set(engines):
            for label in ("contents", "in place"):
                ratio = medians["chdb", label] / medians["duckdb", label]
                print(f"load {label}: chdb / duckdb = {ratio:.2f}")
        measure = {"duckdb": query_time, "chdb": clickhouse_query_time}
        for engine in engines:
            before = os.getloadavg()[0]
            generated, rollup, scan = measure[engine](args.rows, Path(tmp))
            print(
                f"{engine}: generated {args.rows:,} rows in {generated[0]:.1f} s "
                f"({generated[1]:.1f} CPU s) "
                f"(rollups included); 30-day breakdown of one project by installer (rollups) "
                f"{rollup * 1000:.1f} ms, by installer and python (rows) {scan * 1000:.1f} ms "
                f"(best of 5); load average {before:.2f} -> {os.getloadavg()[0]:.2f}"
            )


if __name__ == "__main__":
    main()
