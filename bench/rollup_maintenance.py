"""Benchmark: the CPU a small load's rollup maintenance costs, per load and per statement.

    .venv/bin/python bench/rollup_maintenance.py [--warehouse FILE] [--loads 48]
                                                 [--rows-per-load 5700]

Two copies of a warehouse made by ``bench/stats_web.py`` (its ``--dir``, default the 3M-row
one), loaded alternately with the same result files of ``--rows-per-load`` rows (ingest's
converter over bench/linehaul.py's corpus, moved to today), one with rollup maintenance and
one without (as ``stats_web.py``'s publish part switches it off: no marks, so the load is
its plain ``INSERT``). Per load the process's CPU time (DuckDB's threads included) of
``DuckDBWarehouse.load``; alternating load by load, so both arms see the same machine. Then
the median CPU of each statement each arm ran (each ``execute``, timed by a
proxy of the connection), by the start of its SQL. A reference checkout is measured by
running this script with ``PYTHONPATH=OTHER_CHECKOUT/src``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import stats_web
from pythonhosted.warehouse import rollups
from pythonhosted.warehouse.duck import DuckDBWarehouse

STATEMENTS: dict[bool, defaultdict[str, list[float]]] = {
    True: defaultdict(list),
    False: defaultdict(list),
}


class TimedConnection:
    """A DuckDB connection whose ``execute`` records its CPU time under its SQL's start."""

    def __init__(self, con: Any, maintain: bool) -> None:
        self._con = con
        self._statements = STATEMENTS[maintain]

    def execute(self, sql: str, *args: Any) -> Any:
        started = time.process_time()
        result = self._con.execute(sql, *args)
        self._statements[re.sub(r"\s+", " ", sql)[:60]].append(time.process_time() - started)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--warehouse", default="/tmp/stats-web-bench/warehouse-3000000-published.duckdb"
    )
    parser.add_argument("--loads", type=int, default=48)
    parser.add_argument("--rows-per-load", type=int, default=5700)
    args = parser.parse_args()
    source = Path(args.warehouse)
    print(f"CPU: {stats_web.cpu_model()}, {os.cpu_count()} cores; {stats_web.load()}")
    print(f"code: {Path(rollups.__file__).parent}")
    contents = stats_web.result_files(4, args.rows_per_load)
    today = datetime.now(UTC).date().isoformat().encode()
    copies = {True: source.with_name("maintained.duckdb"), False: source.with_name("plain.duckdb")}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    original = rollups.marks
    try:
        for copy in copies.values():
            shutil.copyfile(source, copy)
            DuckDBWarehouse(copy).close()  # a rollup rebuild, when one is due, is not timed
        for n in range(args.loads):
            for maintain in (n % 2 == 0, n % 2 == 1):
                rollups.marks = original if maintain else (lambda con: None)  # type: ignore
                warehouse = DuckDBWarehouse(copies[maintain])
                plain = warehouse.con
                warehouse.con = TimedConnection(plain, maintain)  # type: ignore[assignment]
                content = contents[n % len(contents)].replace(b"DAY", today)
                started = time.process_time()
                warehouse.load("file_downloads", [(f"bench-{n}.json", content)])
                cpu[maintain].append(time.process_time() - started)
                warehouse.con = plain
                warehouse.close()
    finally:
        rollups.marks = original
        for copy in copies.values():
            copy.unlink(missing_ok=True)
    on, off = (1000 * statistics.median(cpu[m]) for m in (True, False))
    # Each load n of one arm beside load n of the other (run one after the other): the
    # median of their differences moves less with the machine's load than either median.
    paired = 1000 * statistics.median(a - b for a, b in zip(cpu[True], cpu[False], strict=True))
    print(
        f"{args.loads} loads of {args.rows_per_load:,} rows each way, alternating; CPU per load "
        f"median {on:.1f} ms with maintenance, {off:.1f} ms without: {100 * (on / off - 1):+.1f} %"
        f" (means {1000 * statistics.mean(cpu[True]):.1f} and "
        f"{1000 * statistics.mean(cpu[False]):.1f} ms); median difference of a pair of loads "
        f"{paired:.1f} ms, {100 * paired / off:+.1f} %"
    )
    for maintain, statements in STATEMENTS.items():
        print(f"statements, maintenance {'on' if maintain else 'off'} (median ms of CPU, runs):")
        for sql, times in sorted(statements.items(), key=lambda item: -sum(item[1])):
            print(f"  {1000 * statistics.median(times):6.2f} ms x{len(times):<4} {sql}")
    print(stats_web.load())


if __name__ == "__main__":
    main()
