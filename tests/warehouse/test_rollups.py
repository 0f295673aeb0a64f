"""The daily rollups agree with GROUP BY over the rows: after loads, rebuilds, and kill -9."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.linehaul.batch import convert
from pythonhosted.storage import open_store
from pythonhosted.warehouse import rollups
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.stats import Filters, breakdown
from support.linehaul_data import gz
from support.processes import spawn
from support.stats_data import random_lines

PROJECTS = ["Demo_Pkg", "demo-pkg", "demo.pkg", "alpha", "beta", "gamma", "zope.interface"]
FIRST = date(2024, 12, 20)
DAYS = 40
NORM = "lower(regexp_replace(project, '[-_.]+', '-', 'g'))"
MIRROR = rollups.mirror_sql()


def _differences(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Rollup counts (summed per key: a key may have a row per load) missing from a fresh
    aggregate of every row, and the reverse."""
    fresh = rollups.aggregate_sql("true")
    key = rollups.KEY
    stored = f"SELECT {key}, sum(downloads) AS downloads FROM {rollups.ROLLUPS} GROUP BY ALL"
    columns = f"{key}, downloads"
    con = duckdb.connect(str(path), read_only=True)
    try:
        extra = con.execute(
            f"SELECT {columns} FROM ({stored}) EXCEPT ALL SELECT {columns} FROM ({fresh})"
        ).fetchall()
        missing = con.execute(
            f"SELECT {columns} FROM ({fresh}) EXCEPT ALL SELECT {columns} FROM ({stored})"
        ).fetchall()
    finally:
        con.close()
    return extra, missing


def _load_random(path: Path, rng: random.Random, loads: int, per_load: int) -> int:
    db = DuckDBWarehouse(path)
    try:
        for index in range(loads):
            lines = random_lines(rng, per_load, PROJECTS, FIRST, DAYS, start=index * per_load)
            db.load("file_downloads", [(f"d{index}.json", convert(gz(lines)).downloads)])
    finally:
        db.close()
    return loads * per_load


def _oracle(
    path: Path, project: str, field: str | None, start: date, end: date, filters: Filters
) -> dict[object, int]:
    """The question asked of the rows directly, written out here independently."""
    expressions = {
        "version": "file.version",
        "installer": "details.installer.name",
        "python": "NULLIF(regexp_extract(details.python, '^[0-9]+\\.[0-9]+'), '')",
        "system": "details.system.name",
        "country": "country_code",
    }
    key = expressions[field] if field else "'total'"
    where = f"{NORM} = ? AND CAST(timestamp AS DATE) BETWEEN ? AND ?"
    if not filters.mirrors:
        where += f" AND NOT {MIRROR}"
    if not filters.ci:
        where += " AND details.ci IS NOT TRUE"
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            f"SELECT {key}, count(*) FROM file_downloads WHERE {where} GROUP BY 1",
            [project, start, end],
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


def test_rollups_equal_group_by_over_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    rows = _load_random(path, random.Random(15), loads=6, per_load=1500)
    assert _differences(path) == ([], [])
    rng = random.Random(7)
    asked = 0
    for _ in range(40):
        project = rng.choice(["demo-pkg", "alpha", "beta", "gamma", "zope-interface"])
        start = FIRST + timedelta(days=rng.randrange(DAYS))
        end = start + timedelta(days=rng.randrange(DAYS))
        field = rng.choice([None, "version", "installer", "python", "system", "country"])
        filters = Filters(mirrors=rng.random() < 0.5, ci=rng.random() < 0.5)
        result = breakdown(path, project, [field] if field else [], start, end, None, filters)
        got = {(row[0] if field else "total"): row[-1] for row in result.rows}
        assert got == _oracle(path, project, field, start, end, filters)
        asked += sum(got.values())
    assert asked > 0
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute(f"SELECT version FROM {rollups.VERSION}").fetchone() == (6,)
    assert con.execute(
        f"SELECT sum(downloads) FROM {rollups.ROLLUPS} WHERE dimension = ''"
    ).fetchone() == (rows,)
    names = con.execute(f"SELECT name, normalized FROM {rollups.PROJECTS} ORDER BY 1").fetchall()
    con.close()
    assert ("Demo_Pkg", "demo-pkg") in names and ("demo.pkg", "demo-pkg") in names


def test_rebuild_from_the_rows_and_on_a_new_definition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.duckdb"
    _load_random(path, random.Random(3), loads=2, per_load=500)
    con = duckdb.connect(str(path))
    con.execute(f"UPDATE {rollups.ROLLUPS} SET downloads = downloads + 1")  # a hand edit
    con.close()
    assert _differences(path)[0]
    out = CliRunner().invoke(
        main, ["linehaul", "rollup", "--rebuild", "--warehouse", f"duckdb://{path}"]
    )
    assert out.exit_code == 0, out.output
    assert out.stderr == f"linehaul rollup: rebuilt the rollups of {path}\n"
    assert _differences(path) == ([], [])
    # A warehouse from before rollups existed gets them at its next publish.
    con = duckdb.connect(str(path))
    con.execute(f"DROP TABLE {rollups.ROLLUPS}")
    con.execute(f"DROP TABLE {rollups.VERSION}")
    con.close()
    DuckDBWarehouse(path).close()
    assert _differences(path) == ([], [])
    # So does one whose rollups were made by other rules (a changed mirror list).
    monkeypatch.setattr(rollups, "DEFINITION", rollups.DEFINITION + ";test")
    con = duckdb.connect(str(path))
    con.execute(f"DELETE FROM {rollups.ROLLUPS} WHERE dimension = 'country'")
    con.close()
    DuckDBWarehouse(path).close()
    assert _differences(path) == ([], [])
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute(f"SELECT definition FROM {rollups.VERSION}").fetchone() == (
        rollups.DEFINITION,
    )
    con.close()


def test_rollup_command_errors(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        main, ["linehaul", "rollup", "--rebuild", "--warehouse", f"duckdb://{tmp_path}/none"]
    )
    assert (out.exit_code, out.output) == (1, f"Error: no warehouse at {tmp_path}/none\n")


def _publish(results: str, warehouse: str) -> subprocess.Popen[bytes]:
    return spawn(
        [sys.executable, "-m", "pythonhosted", "linehaul", "publish", "--once",
         "--results", results, "--warehouse", warehouse],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def test_rollups_agree_with_the_rows_after_sigkill_of_publish(tmp_path: Path) -> None:
    """Publish killed at random moments, again and again: rows, rollups and names stay in
    step (each load commits all three or none)."""
    rng = random.Random(9)
    results_url = f"file://{tmp_path}/results"
    results = open_store(results_url)
    expected = 0
    for index in range(60):
        lines = random_lines(rng, 400, PROJECTS, FIRST, DAYS, start=index * 400)
        key = f"processed/20250101/downloads-{index:03d}.json"
        asyncio.run(results.put(key, convert(gz(lines)).downloads))
        expected += 400
    path = tmp_path / "w.duckdb"
    warehouse = f"duckdb://{path}"
    kills = 0
    for _ in range(8):
        before = len(asyncio.run(results.list("processed/")))
        process = _publish(results_url, warehouse)
        try:
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                if len(asyncio.run(results.list("processed/"))) < before:
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                kills += 1
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process.returncode == 0:
            break
        assert path.exists()
        assert _differences(path) == ([], [])
    final = _publish(results_url, warehouse)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    assert kills >= 1
    assert _differences(path) == ([], [])
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT url) FROM file_downloads").fetchone() == (
        expected,
        expected,
    )
    con.close()


def test_settled_days_are_compacted_to_one_row_per_key(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    rng = random.Random(5)
    db = DuckDBWarehouse(path)
    try:
        for index in range(3):  # three loads over the same 3 days: keys repeat
            lines = random_lines(rng, 300, PROJECTS, FIRST, 3, start=index * 300)
            db.load("file_downloads", [(f"a{index}.json", convert(gz(lines)).downloads)])
        con = db.con
        keys = f"SELECT count(*) FROM (SELECT DISTINCT {rollups.KEY} FROM {rollups.ROLLUPS})"
        rows = f"SELECT count(*) FROM {rollups.ROLLUPS}"
        assert con.execute(rows).fetchone()[0] > con.execute(keys).fetchone()[0]  # type: ignore[index]
        later = random_lines(rng, 50, PROJECTS, FIRST + timedelta(days=10), 1, start=5000)
        db.load("file_downloads", [("b.json", convert(gz(later)).downloads)])
        settled = f" WHERE day <= DATE '{FIRST + timedelta(days=8)}'"
        assert (
            con.execute(rows + settled).fetchone()
            == con.execute(
                f"SELECT count(*) FROM (SELECT DISTINCT {rollups.KEY} FROM {rollups.ROLLUPS}"
                f"{settled})"
            ).fetchone()
        )
        assert con.execute(f"SELECT compacted_through FROM {rollups.VERSION}").fetchone() == (
            FIRST + timedelta(days=8),
        )
        # A late batch for a compacted day: that day is compacted again.
        late = random_lines(rng, 40, PROJECTS, FIRST, 1, start=9000)
        db.load("file_downloads", [("c.json", convert(gz(late)).downloads)])
        assert (
            con.execute(rows + settled).fetchone()
            == con.execute(
                f"SELECT count(*) FROM (SELECT DISTINCT {rollups.KEY} FROM {rollups.ROLLUPS}"
                f"{settled})"
            ).fetchone()
        )
    finally:
        db.close()
    assert _differences(path) == ([], [])
