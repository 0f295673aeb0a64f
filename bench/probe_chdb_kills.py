"""Probe: SIGKILL a chDB load of result files at random moments, retry as publish does, and
count files whose rows (or rollups) are missing or doubled afterwards.

ClickHouse's non-replicated ``MergeTree`` logs an insert's deduplication token before it
renames the part into place; a kill between the two leaves a token without rows, and a
retry carrying the same token is dropped as a duplicate. This probe measures how often
that happens to :class:`ClickHouseWarehouse` under kill -9 (``load.py``'s module doc).

Each round starts a child that opens the warehouse and loads one small file after another
(file ``i``'s rows carry its name as ``url`` and a project of its own, so each file's
rows and rollups can be counted apart), kills it at a random moment, then loads every file the
child started again in this process (publish's retry) and counts each file's rows and
rollups. Bounded by ``--rounds`` and ``--seconds``. Run:

    .venv/bin/python bench/probe_chdb_kills.py --rounds 200 --seconds 600
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = 3
TABLE = "file_downloads"


def name_of(number: int) -> str:
    return f"processed/20210107/downloads-{number:06d}.json"


def project_of(number: int) -> str:
    return f"p{number:06d}"


def file_rows(number: int) -> bytes:
    name, project = name_of(number), project_of(number)
    row = (
        f'{{"timestamp":"2021-01-07 20:54:54 +00:00","url":"{name}","project":"{project}",'
        f'"file":{{"filename":"a","project":"p","version":"1","type":"sdist"}},'
        f'"details":null}}\n'
    )
    return row.encode() * ROWS


def child(path: Path, first: int) -> None:
    """Load file after file until killed (at most 5,000), saying which one starts."""
    from pythonhosted.warehouse.clickhouse.engines import ChdbEngine
    from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse

    house = ClickHouseWarehouse(ChdbEngine(path))
    print("ready", flush=True)
    for number in range(first, first + 5000):
        print(f"start {number}", flush=True)
        house.load(TABLE, [(name_of(number), file_rows(number))])
    house.close()


def check(path: Path, numbers: range) -> tuple[int, int, int]:
    """Load ``numbers`` again (publish's retry); files lost, rollups lost, files doubled."""
    from pythonhosted.warehouse.clickhouse.engines import ChdbEngine
    from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse

    house = ClickHouseWarehouse(ChdbEngine(path))
    try:
        for number in numbers:
            house.load(TABLE, [(name_of(number), file_rows(number))])
        names = [name_of(number) for number in numbers]
        rows = dict(
            house.engine.rows(
                f"SELECT url, count() FROM {TABLE} WHERE url IN {{n:Array(String)}} GROUP BY url",
                {"n": names},
            )
        )
        rollups = dict(
            house.engine.rows(
                "SELECT project, sum(downloads) FROM download_rollups "
                "WHERE dimension = '' AND project IN {n:Array(String)} GROUP BY project",
                {"n": [project_of(number) for number in numbers]},
            )
        )
    finally:
        house.close()
    found = [(rows.get(name_of(n), 0), rollups.get(project_of(n), 0)) for n in numbers]
    for number, (row_count, rollup_count) in zip(numbers, found, strict=True):
        if (row_count, rollup_count) != (ROWS, ROWS):
            print(f"  {name_of(number)}: rows {row_count}, rollups {rollup_count}", flush=True)
    lost = sum(1 for row_count, _ in found if row_count < ROWS)
    lost_rollups = sum(1 for _, rollup_count in found if rollup_count < ROWS)
    doubled = sum(1 for row_count, rollup_count in found if max(row_count, rollup_count) > ROWS)
    return lost, lost_rollups, doubled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--window", type=float, default=0.4, help="kill within this after ready")
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), int(args.child[1]))
        return
    rng = random.Random(os.environ.get("SEED", "probe"))
    totals = [0, 0, 0]
    started_at = time.monotonic()
    first = rounds = 0
    with tempfile.TemporaryDirectory(prefix="probe-chdb-") as tmp:
        path = Path(tmp) / "ch"
        while rounds < args.rounds and time.monotonic() - started_at < args.seconds:
            rounds += 1
            process = subprocess.Popen(
                [sys.executable, __file__, "--child", str(path), str(first)],
                stdout=subprocess.PIPE,
                start_new_session=True,
                text=True,
            )
            try:
                assert process.stdout is not None
                if process.stdout.readline().strip() != "ready":
                    raise SystemExit("the child did not start")
                time.sleep(rng.uniform(0, args.window))
                os.killpg(process.pid, signal.SIGKILL)
                said = process.stdout.read().split()
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            last = max([int(word) for word in said if word.isdigit()], default=first - 1)
            found = check(path, range(first, last + 1))
            totals = [total + one for total, one in zip(totals, found, strict=True)]
            first = last + 1
    cpu = os.times()
    print(
        f"rounds {rounds}, files {first}, lost files {totals[0]}, lost rollups {totals[1]}, "
        f"doubled {totals[2]}; {time.monotonic() - started_at:.0f} s, "
        f"CPU of children {cpu.children_user + cpu.children_system:.0f} s"
    )


if __name__ == "__main__":
    main()
