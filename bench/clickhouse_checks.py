"""Benchmark: what checking each insert costs a ClickHouse load (``load.py``'s module doc).

    .venv/bin/python bench/clickhouse_checks.py [--rows 20000000] [--inserts 400] [--loads 50]

Makes a chDB warehouse whose ``file_downloads`` holds ``--rows`` rows from ``--inserts``
inserts (each its own token, merged as ClickHouse merges them), then loads ``--loads``
small result files one at a time and reports the CPU seconds of this process per load, and
the CPU of the two checks alone (rows by token, markers). Run it with ``PYTHONPATH`` at an
older tree's ``src`` to compare a load without the checks (the check lines are then
skipped).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from pythonhosted.warehouse.clickhouse.engines import ChdbEngine
from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse, token

ROW = (
    '{{"timestamp":"2024-01-07 20:54:54 +00:00","url":"/x","project":"p{n}",'
    '"file":{{"filename":"a","project":"p{n}","version":"1","type":"sdist"}},'
    '"details":{{"installer":{{"name":"pip"}},"python":"3.12.1"}}}}\n'
)


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--inserts", type=int, default=400)
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--file-rows", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ch-checks-") as tmp:
        house = ClickHouseWarehouse(ChdbEngine(Path(tmp) / "ch"))
        try:
            started = time.monotonic()
            per = args.rows // args.inserts
            for number in range(args.inserts):
                house.engine.command(
                    "INSERT INTO file_downloads (timestamp, url, project) "
                    f"SETTINGS insert_deduplication_token = 'bench-{number}' "
                    "SELECT toDateTime64('2024-01-01', 6, 'UTC') + toIntervalSecond(number), "
                    "'/x', concat('p', toString(number % 2000)) "
                    f"FROM numbers({number * per}, {per})"
                )
            print(f"{args.rows} rows in {args.inserts} inserts: {time.monotonic() - started:.0f} s")
            parts = house.engine.rows(
                "SELECT count() FROM system.parts WHERE active AND table = 'file_downloads'"
            )
            print(f"active parts: {parts[0][0]}")
            data = "".join(ROW.format(n=n % 50) for n in range(args.file_rows)).encode()
            before = cpu()
            for number in range(args.loads):
                house.load("file_downloads", [(f"processed/x/bench-{number}.json", data)])
            spent = (cpu() - before) / args.loads
            print(f"load of a {args.file_rows}-row file: {spent * 1000:.1f} ms CPU each")
            if hasattr(house, "_with_rows"):
                tokens = [token("file_downloads", f"processed/x/bench-{n}.json") for n in range(10)]
                before = cpu()
                for _ in range(args.loads):
                    assert len(house._with_rows("file_downloads", tokens)) == 10
                rows_check = (cpu() - before) / args.loads
                before = cpu()
                for _ in range(args.loads):
                    assert len(house._with_markers(tokens)) == 10
                marker_check = (cpu() - before) / args.loads
                print(
                    f"checks of 10 tokens: rows {rows_check * 1000:.1f} ms CPU, "
                    f"markers {marker_check * 1000:.1f} ms CPU"
                )
        finally:
            house.close()


if __name__ == "__main__":
    main()
