"""Benchmark: DuckDB warehouse load rate and a 30-day by-installer breakdown over 10M rows.

    .venv/bin/python bench/warehouse.py [--load-lines 500000] [--load-runs 3] [--rows 10000000]

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
   compares the two.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from pythonhosted.linehaul.batch import convert
from pythonhosted.warehouse import LocalFile
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.stats import breakdown

_spec = importlib.util.spec_from_file_location("corpus", Path(__file__).with_name("linehaul.py"))
assert _spec is not None and _spec.loader is not None
corpus_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_module)

GENERATE = """
INSERT INTO file_downloads
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


def load_files(lines: int) -> list[tuple[str, bytes]]:
    """The corpus as ingest's result files, 100k lines each."""
    text = corpus_module.corpus(lines, 1)
    chunk = 100_000
    files = []
    for start in range(0, len(text), chunk):
        data = gzip.compress(("\n".join(text[start : start + chunk]) + "\n").encode(), 1)
        files.append((f"downloads-{start}.json", convert(data).downloads))
    return files


def load_rate(
    files: list[tuple[str, bytes]], local: list[LocalFile] | None, path: Path
) -> tuple[int, float, float]:
    """Rows loaded, wall seconds and CPU seconds of one load into a new file: of the files'
    contents, or (``local``) of the same files lying on disk."""
    warehouse = DuckDBWarehouse(path)
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


def query_time(rows: int, workdir: Path) -> tuple[float, float]:
    path = workdir / "query.duckdb"
    warehouse = DuckDBWarehouse(path)
    began = time.perf_counter()
    warehouse.con.execute(GENERATE.replace("{rows}", str(rows)))
    generated = time.perf_counter() - began
    warehouse.rebuild_rollups()  # rows made by SQL, not loads: the rollups are made after
    warehouse.close()
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        breakdown(path, "project-1", ["installer"], date(2021, 2, 1), date(2021, 3, 2))
        best = min(best, time.perf_counter() - began)
    return generated, best


def main() -> None:
    flags = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    flags.add_argument("--load-lines", type=int, default=500_000)
    flags.add_argument("--load-runs", type=int, default=3)
    flags.add_argument("--rows", type=int, default=10_000_000)
    args = flags.parse_args()
    print(f"machine: {corpus_module._machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        files = load_files(args.load_lines)
        local = on_disk(files, Path(tmp) / "results")
        for label, where in (("contents", None), ("in place", local)):
            before = os.getloadavg()[0]
            runs = []
            for run in range(args.load_runs):
                rows, spent, cpu = load_rate(files, where, Path(tmp) / f"load-{label}-{run}.duckdb")
                runs.append((rows / spent, cpu))
                print(
                    f"load {label} {run + 1}: {rows:,} rows in {spent:.2f} s = "
                    f"{rows / spent:,.0f} rows/s ({cpu:.2f} CPU s)"
                )
            if len(runs) > 1:
                rates, cpus = [rate for rate, _ in runs[1:]], [cpu for _, cpu in runs[1:]]
                print(
                    f"loads {label} 2-{len(runs)}: median {statistics.median(rates):,.0f} rows/s "
                    f"({min(rates):,.0f}-{max(rates):,.0f}), {statistics.median(cpus):.2f} CPU s "
                    f"({min(cpus):.2f}-{max(cpus):.2f}); load average {before:.2f} -> "
                    f"{os.getloadavg()[0]:.2f}"
                )
        generated, best = query_time(args.rows, Path(tmp))
        print(f"generated {args.rows:,} rows in {generated:.1f} s")
        print(f"30-day by-installer breakdown of one project: {best * 1000:.0f} ms (best of 5)")


if __name__ == "__main__":
    main()
