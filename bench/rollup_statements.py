"""Benchmark: a small load's maintenance statements, this checkout's against a reference's.

    .venv/bin/python bench/rollup_statements.py --reference OTHER_CHECKOUT/src
                                                [--warehouse FILE] [--runs 150]
                                                [--rows-per-load 5700]

``bench/rollup_maintenance.py`` times whole loads, whose CPU varies by more than the few
milliseconds of maintenance on a loaded machine. This times the statements alone, in one
process, interleaved run by run, each in a transaction rolled back, on a copy of the
warehouse (default: ``bench/stats_web.py``'s 3M-row one): the load's plain ``INSERT``, each
code's ``rollups.insert_sql`` (the insert with the totals and spellings; this code's
without the totals, which wait in the totals tail), each code's ``rollups.marks``, and
this code's ``rollups.roll_totals`` of the table's last ``TOTALS_TAIL_ROWS`` less one
load's rows (a tail about to roll; divided by the loads it holds: its share per load), and
this code's ``rollups.bump`` without and with a late part of ten names (its own row in
``warehouse_late``), and ``rollups.late_projects`` over the table's last load's rows taken
as late (a load of several days runs it; one of one day runs neither).
The reference's ``rollups`` module is loaded from its file (its SQL, this checkout's
helpers). Printed: the median CPU of each, and the median differences of the
pairs of runs (the insert's maintenance is its difference from the plain ``INSERT``).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import stats_web
from pythonhosted.warehouse import rollups
from pythonhosted.warehouse.duck import DuckDBWarehouse, _read_json_sql


def reference_rollups(src: Path) -> Any:
    spec = importlib.util.spec_from_file_location(
        "reference_rollups", src / "pythonhosted" / "warehouse" / "rollups.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="another checkout's src/ directory")
    parser.add_argument(
        "--warehouse", default="/tmp/stats-web-bench/warehouse-3000000-published.duckdb"
    )
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--rows-per-load", type=int, default=5700)
    args = parser.parse_args()
    print(f"CPU: {stats_web.cpu_model()}; {stats_web.load()}")
    reference = reference_rollups(Path(args.reference))
    source = Path(args.warehouse)
    copy = source.with_name("statements.duckdb")
    shutil.copyfile(source, copy)
    day = datetime.now(UTC).date()
    today = day.isoformat().encode()
    late = [f"project-{n}" for n in range(0, 5000, 500)]
    spools = []
    for index, content in enumerate(stats_web.result_files(4, args.rows_per_load)):
        spool = copy.with_name(f"statements-{index}.json")
        spool.write_bytes(content.replace(b"DAY", today))
        spools.append(str(spool))
    warehouse = DuckDBWarehouse(copy)
    con = warehouse.con
    try:
        rows = con.execute("SELECT count(*) FROM file_downloads").fetchone()
        assert rows is not None
        con.execute(f"UPDATE {rollups.VERSION} SET next_rowid = ?", [rows[0]])  # as a load's
        before = rollups.marks(con)
        tail_from = rows[0] - (rollups.TOTALS_TAIL_ROWS - args.rows_per_load)
        arms: dict[str, Callable[[str], Any]] = {
            "plain INSERT": lambda sql: con.execute(sql).fetchall(),
            "insert_sql, reference": lambda sql: con.execute(
                reference.insert_sql(sql, before)
            ).fetchall(),
            "insert_sql, this code": lambda sql: con.execute(
                rollups.insert_sql(sql, before)
            ).fetchall(),
            "marks, reference": lambda _: reference.marks(con),
            "marks, this code": lambda _: rollups.marks(con),
            "roll_totals, this code": lambda _: rollups.roll_totals(con, tail_from),
            "late_projects of a load's rows, this code": lambda _: rollups.late_projects(
                con, f"rowid >= {rows[0] - args.rows_per_load}", day
            ),
            "bump, this code": lambda _: rollups.bump(con, first_day=day, uploads=False),
            "bump with a late part of 10 names, this code": lambda _: rollups.bump(
                con, first_day=day - timedelta(days=1), uploads=False, late=(day, late)
            ),
        }
        cpu: dict[str, list[float]] = {name: [] for name in arms}
        for run in range(args.runs):
            insert = _read_json_sql("file_downloads", [spools[run % len(spools)]])
            for name, arm in arms.items():
                con.execute("BEGIN TRANSACTION")
                started = time.process_time()
                arm(insert)
                cpu[name].append(time.process_time() - started)
                con.execute("ROLLBACK")
    finally:
        warehouse.close()
        copy.unlink(missing_ok=True)
        for spool in spools:
            Path(spool).unlink(missing_ok=True)
    print(f"{args.runs} runs each, interleaved; median ms of CPU:")
    for name, times in cpu.items():
        print(f"  {1000 * statistics.median(times):7.2f}  {name}")

    def paired(first: str, second: str) -> float:
        return 1000 * statistics.median(a - b for a, b in zip(cpu[first], cpu[second], strict=True))

    loads_per_roll = (rollups.TOTALS_TAIL_ROWS - args.rows_per_load) / args.rows_per_load
    per_load = 1000 * statistics.median(cpu["roll_totals, this code"]) / loads_per_roll
    print(
        "median differences of paired runs: the insert's maintenance "
        f"{paired('insert_sql, reference', 'plain INSERT'):.2f} ms (reference), "
        f"{paired('insert_sql, this code', 'plain INSERT'):.2f} ms (this code); marks "
        f"{paired('marks, reference', 'marks, this code'):.2f} ms more in the reference"
        f"; a roll of the totals tail per load {per_load:.2f} ms; a late part's row "
        f"{paired('bump with a late part of 10 names, this code', 'bump, this code'):.2f} ms"
    )
    print(stats_web.load())


if __name__ == "__main__":
    main()
