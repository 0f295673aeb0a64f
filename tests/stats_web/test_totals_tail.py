"""Small loads' totals wait behind a rowid mark (the totals tail); the API's and the CLI's
totals add them from the rows, so they equal GROUP BY over the rows while the tail holds
rows, and a small load appends no rollup row."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import httpx
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.stats_web import build_app
from pythonhosted.warehouse import rollups
from pythonhosted.web.server import running
from support.stats_warehouse import YESTERDAY, Warehouse, add_batch, build, d, event_lines, publish

NORM = "lower(regexp_replace(project, '[-_.]+', '-', 'g'))"
# A download: a reference row, a 200, or a 206 from byte 0 (written out independently).
DOWNLOAD = "(response IS NULL OR response.status = 200 OR response.range_start = 0)"


def _rows_per_day(path: Path, project: str) -> dict[str, tuple[int, int]]:
    """(with mirrors, without) per day of ``project``'s downloads, from the rows."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        found = con.execute(
            'SELECT CAST("timestamp" AS DATE), count(*), '
            f"count(*) FILTER (NOT {rollups.mirror_sql()}) FROM file_downloads "
            f"WHERE {NORM} = ? AND {DOWNLOAD} GROUP BY 1",
            [project],
        ).fetchall()
    finally:
        con.close()
    return {day.isoformat(): (int(every), int(plain)) for day, every, plain in found}


def _count(path: Path, sql: str) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        found = con.execute(sql).fetchone()
    finally:
        con.close()
    assert found is not None
    return int(found[0])


def _cli_total(warehouse: Warehouse, *args: str) -> object:
    out = CliRunner().invoke(
        main,
        [
            "stats",
            "demo-pkg",
            *args,
            "--format",
            "json",
            "--warehouse",
            f"duckdb://{warehouse.path}",
        ],
    )
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)["total"]


def test_totals_read_through_the_api_and_cli_add_the_rows_behind_the_mark(
    tmp_path: Path,
) -> None:
    warehouse = build(tmp_path, event_lines())
    rollups_held = f"SELECT count(*) FROM {rollups.ROLLUPS}"
    rollup_rows = _count(warehouse.path, rollups_held)
    add_batch(warehouse, 900, 3, day=YESTERDAY)
    add_batch(warehouse, 910, 2, day=YESTERDAY, project="Demo.Pkg")
    publish(warehouse)
    # Small loads: their totals wait behind the mark, so the tail holds every row.
    assert _count(warehouse.path, rollups_held) == rollup_rows
    mark = f"SELECT totals_from FROM {rollups.VERSION}"
    tail = f"SELECT count(*) FROM file_downloads WHERE rowid >= ({mark})"
    assert (
        _count(warehouse.path, tail)
        == _count(warehouse.path, "SELECT count(*) FROM file_downloads")
        > 5
    )

    per_day = _rows_per_day(warehouse.path, "demo-pkg")
    yesterday = YESTERDAY.isoformat()
    assert per_day[yesterday][0] == 4 + 5  # the events' and the new batches'
    in_days = {
        days: sum(
            plain for day, (_, plain) in per_day.items() if d(days).isoformat() <= day <= yesterday
        )
        for days in (1, 7, 30)
    }
    with running(build_app(warehouse.settings)) as base:
        recent = httpx.get(f"{base}/api/packages/demo-pkg/recent").json()["data"]
        overall = httpx.get(f"{base}/api/packages/demo-pkg/overall").json()["data"]
        shields = httpx.get(f"{base}/api/v1/projects/demo-pkg/shields?period=total").json()
    assert recent == {"last_day": in_days[1], "last_week": in_days[7], "last_month": in_days[30]}
    assert overall == [
        {"category": category, "date": day, "downloads": counts[index]}
        for day, counts in sorted(per_day.items())
        if day <= yesterday
        for index, category in enumerate(("with_mirrors", "without_mirrors"))
    ]
    assert shields["message"] == str(sum(plain for _, plain in per_day.values()))
    for days in (1, 7, 30):
        assert _cli_total(warehouse, "--days", str(days), "--end", yesterday) == in_days[days]
    today = (YESTERDAY + timedelta(days=1)).isoformat()
    assert _cli_total(warehouse, "--start", today, "--end", today) == per_day[today][1]
