"""The daily rollups agree with GROUP BY over the rows: after loads, rebuilds, and kill -9.

The rows are our edge's (most downloads after a served line, some of them ranges that are
not downloads) and the reference's (no response), so the counting rule is checked too."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import cast

import duckdb
import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.linehaul.batch import convert
from pythonhosted.stats_web import data
from pythonhosted.storage import open_store
from pythonhosted.warehouse import rollups
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.stats import Filters, breakdown
from support.linehaul_data import gz
from support.processes import spawn
from support.scanned import Scanned
from support.stats_data import line, random_lines
from support.uploads_data import upload

PROJECTS = ["Demo_Pkg", "demo-pkg", "demo.pkg", "alpha", "beta", "gamma", "zope.interface"]
FIRST = date(2024, 12, 20)
DAYS = 40
NORM = "lower(regexp_replace(project, '[-_.]+', '-', 'g'))"
MIRROR = rollups.mirror_sql()
# A download: a reference row, a 200, or a 206 from byte 0 (written out independently).
DOWNLOAD = "(response IS NULL OR response.status = 200 OR response.range_start = 0)"


def _differences(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Counts (summed per key: a key may have several rows) that readers see, the rollups
    and the tail's breakdowns from the rows (:func:`rollups.daily`), missing from a fresh
    aggregate of every row, and the reverse; and the same for the rollups alone against the
    totals of the rows below the totals mark, breakdowns of the settled days, and breakdowns
    of the open days' rows below the tail mark (the rollups must hold no other)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return _differences_in(con)
    finally:
        con.close()


def _differences_in(
    con: duckdb.DuckDBPyConnection,
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """:func:`_differences` over an open connection (a writer's, between its loads)."""
    key = rollups.KEY
    columns = f"{key}, downloads"
    settled = rollups.settled_through(con)
    found = con.execute(f"SELECT tail_from, totals_from FROM {rollups.VERSION}").fetchone()
    assert found is not None
    tail_from, totals_from = found
    source, params = rollups.daily(con)
    seen = f"SELECT {key}, sum(downloads) AS downloads FROM ({source}) GROUP BY ALL"
    both = (
        f"SELECT {key}, downloads FROM {rollups.ROLLUPS} UNION ALL "
        f"SELECT {key}, downloads FROM {rollups.OPEN_BREAKDOWNS}"
    )
    stored = f"SELECT {key}, sum(downloads) AS downloads FROM ({both}) GROUP BY ALL"
    through = f"DATE '{settled}'" if settled else "DATE '0001-01-01'"
    open_days = f'CAST("timestamp" AS DATE) > {through}'
    below = f"{open_days} AND rowid < {tail_from}"
    breakdowns = list(rollups.DIMENSIONS)
    totals = rollups.aggregate_sql(f"rowid < {totals_from}", dimensions=[""])
    settled_rows = (
        f"SELECT * FROM ({rollups.aggregate_sql(f'NOT ({open_days})', dimensions=breakdowns)}) "
        f"UNION ALL SELECT * FROM ({totals}) "
        f"UNION ALL SELECT * FROM ({rollups.aggregate_sql(below, dimensions=breakdowns)})"
    )
    differences: tuple[list[tuple[object, ...]], list[tuple[object, ...]]] = ([], [])
    for ours, ours_params, fresh in (
        (seen, params, rollups.aggregate_sql("true")),
        (stored, [], settled_rows),
    ):
        differences[0].extend(
            con.execute(
                f"SELECT {columns} FROM ({ours}) EXCEPT ALL SELECT {columns} FROM ({fresh})",
                ours_params,
            ).fetchall()
        )
        differences[1].extend(
            con.execute(
                f"SELECT {columns} FROM ({fresh}) EXCEPT ALL SELECT {columns} FROM ({ours})",
                ours_params,
            ).fetchall()
        )
    return differences


def _load_random(path: Path, rng: random.Random, loads: int, per_load: int) -> int:
    db = DuckDBWarehouse(path)
    try:
        for index in range(loads):
            lines = random_lines(
                rng, per_load, PROJECTS, FIRST, DAYS, start=index * per_load, with_served=True
            )
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
    where += f" AND {DOWNLOAD}"
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


def _ask_random(path: Path, rng: random.Random, questions: int, days: int) -> int:
    """Random breakdowns (project, range within ``days`` of FIRST, dimension, filters) as
    ``stats`` asks them, each equal to the oracle over the rows; the downloads they counted."""
    asked = 0
    for _ in range(questions):
        project = rng.choice(["demo-pkg", "alpha", "beta", "gamma", "zope-interface"])
        start = FIRST + timedelta(days=rng.randrange(days))
        end = start + timedelta(days=rng.randrange(days))
        field = rng.choice([None, *rollups.DIMENSIONS])
        filters = Filters(mirrors=rng.random() < 0.5, ci=rng.random() < 0.5)
        result = breakdown(path, project, [field] if field else [], start, end, None, filters)
        got = {(row[0] if field else "total"): row[-1] for row in result.rows}
        assert got == _oracle(path, project, field, start, end, filters)
        asked += sum(got.values())
    return asked


def test_rollups_equal_group_by_over_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    rows = _load_random(path, random.Random(15), loads=6, per_load=1500)
    assert _differences(path) == ([], [])
    assert _ask_random(path, random.Random(7), questions=40, days=DAYS) > 0
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute(f"SELECT version FROM {rollups.VERSION}").fetchone() == (6,)
    settled = FIRST + timedelta(days=DAYS - 1 - rollups.OPEN_DAYS)
    assert rollups.settled_through(con) == settled
    assert (
        con.execute(
            f"SELECT sum(downloads) FROM {rollups.ROLLUPS} WHERE dimension = 'installer'"
        ).fetchone()
        == con.execute(
            f"SELECT count(*) FROM file_downloads WHERE {DOWNLOAD} "
            "AND CAST(timestamp AS DATE) <= ?",
            [settled],
        ).fetchone()
    )
    totals_tail = (
        f"SELECT count(*) FROM file_downloads WHERE {DOWNLOAD} "
        f"AND rowid >= (SELECT totals_from FROM {rollups.VERSION})"
    )
    for dimension in ("", "installer"):
        source, params = rollups.daily(con, dimensions=[dimension])
        assert (
            con.execute(f"SELECT sum(downloads) FROM ({source})", params).fetchone()
            == con.execute(f"SELECT count(*) FROM file_downloads WHERE {DOWNLOAD}").fetchone()
            == con.execute(
                f"SELECT coalesce(sum(downloads), 0) + ({totals_tail}) FROM {rollups.ROLLUPS} "
                "WHERE dimension = ''"
            ).fetchone()
        )
    assert con.execute("SELECT count(*) FROM file_downloads").fetchone() == (rows,)
    ranges = f"SELECT count(*) FROM file_downloads WHERE NOT {DOWNLOAD}"
    assert rows * 0.2 < con.execute(ranges).fetchone()[0] < rows * 0.45  # type: ignore[index]
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
    _assert_rebuilt_when_opened(path)


def _assert_rebuilt_when_opened(path: Path) -> None:
    """Opening the warehouse for loading leaves rollups that agree with the rows, made by
    the current definition."""
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


def _kill_again_and_again(
    start: Callable[[], subprocess.Popen[bytes]],
    at_work: Callable[[], bool],
    pause: Callable[[], float],
    check: Callable[[], None],
) -> int:
    """Up to 8 rounds: start a writer, wait until it is ``at_work``, a random ``pause`` more,
    SIGKILL its group if it still runs, then ``check`` what it left; stop at the first round
    it finished in. Returns how many were killed."""
    kills = 0
    for _ in range(8):
        process = start()
        try:
            deadline = time.monotonic() + 60
            while not at_work() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(pause())
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
        check()
    return kills


@pytest.mark.long
def test_rollups_agree_with_the_rows_after_sigkill_of_publish(tmp_path: Path) -> None:
    """Publish killed at random moments, again and again: rows, rollups and names stay in
    step (each load commits all three or none)."""
    rng = random.Random(9)
    results_url = f"file://{tmp_path}/results"
    results = open_store(results_url)
    expected = 0
    for index in range(60):
        lines = random_lines(rng, 400, PROJECTS, FIRST, DAYS, start=index * 400, with_served=True)
        key = f"processed/20250101/downloads-{index:03d}.json"
        asyncio.run(results.put(key, convert(gz(lines)).downloads))
        expected += 400
    path = tmp_path / "w.duckdb"
    warehouse = f"duckdb://{path}"
    started = 0.0

    def start() -> subprocess.Popen[bytes]:
        nonlocal started
        started = time.time()
        return _publish(results_url, warehouse)

    def loading() -> bool:
        """The publisher has begun writing its load: a log of this round's own. (Its 60 small
        files are one group, so the files it moves away say only that it has committed:
        waiting for that, kills landed after the commit or not at all.)"""
        try:
            return Path(f"{path}.wal").stat().st_mtime >= started
        except FileNotFoundError:
            return False

    def check() -> None:
        """Rows and rollups in step; killed before its tables were made, nothing loaded."""
        assert path.exists()
        con = duckdb.connect(str(path), read_only=True)
        try:
            tables = {name for (name,) in con.execute("SHOW TABLES").fetchall()}
            if rollups.VERSION not in tables:
                assert "file_downloads" not in tables or _rows(con) == 0
                return
        finally:
            con.close()
        assert _differences(path) == ([], [])
        assert _unrecorded_changes(path) == []

    kills = _kill_again_and_again(start, loading, lambda: rng.uniform(0, 0.05), check)
    final = _publish(results_url, warehouse)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    assert kills >= 1
    assert _differences(path) == ([], [])
    assert _unrecorded_changes(path) == []
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT url) FROM file_downloads").fetchone() == (
        expected,
        expected,
    )
    con.close()


def _unrecorded_changes(path: Path) -> list[int]:
    """The data versions without their row of what they changed, or with more than one
    (each bump writes its row in the load's transaction: exactly one, kill or not)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        found = con.execute(f"SELECT version FROM {rollups.VERSION}").fetchone()
        assert found is not None
        recorded = [v for (v,) in con.execute(f"SELECT version FROM {rollups.CHANGES}").fetchall()]
    finally:
        con.close()
    missing = sorted(set(range(1, int(found[0]) + 1)) - set(recorded))
    return missing + sorted(v for v in recorded if recorded.count(v) > 1 or v > found[0])


def test_each_version_records_the_first_day_it_touched_and_uploads(tmp_path: Path) -> None:
    """What the stats web keeps cached answers by: per data version, the earliest day whose
    downloads its load brought (a late one for a settled day too), none for uploads alone
    (which say so), every day for a rebuild."""
    path = tmp_path / "w.duckdb"
    days = [FIRST + timedelta(days=n) for n in range(6)]
    db = DuckDBWarehouse(path)
    try:
        _load(
            db, "a.json", [line(n, datetime.combine(days[n], datetime.min.time())) for n in (3, 5)]
        )
        _load(db, "b.json", [line(10, datetime.combine(days[5], datetime.min.time()))])
        _load(db, "late.json", [line(11, datetime.combine(days[1], datetime.min.time()))])
        db.add_distributions([upload("alpha", "1.0", 1)])
        db.add_distributions([upload("alpha", "1.0", 1)])  # nothing new: no version
        db.rebuild_rollups()
        changes = db.con.execute(
            f"SELECT version, first_day, uploads FROM {rollups.CHANGES} ORDER BY version"
        ).fetchall()
    finally:
        db.close()
    assert changes == [
        (1, days[3], False),
        (2, days[5], False),
        (3, days[1], False),
        (4, None, True),
        (5, date.min, False),
    ]
    assert _unrecorded_changes(path) == []


@pytest.mark.parametrize("one_statement", [True, False], ids=["small-load", "large-load"])
def test_a_load_records_the_projects_of_its_days_before_its_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_statement: bool
) -> None:
    """A late part (downloads of days before the load's newest) names its projects, PEP 503
    names, up to the bound: a range read elsewhere than byte 0 is no download and names
    none; a load of one day, or past the bound, records none. A warehouse from before the
    record gains its table when opened for loading, and loads on."""
    monkeypatch.setattr(rollups, "LATE_PROJECTS", 3)
    if not one_statement:  # inserted, then its totals read back (a load past 16 MB)
        monkeypatch.setattr(rollups, "ONE_STATEMENT_BYTES", 0)
    path = tmp_path / "w.duckdb"
    days = [datetime.combine(FIRST + timedelta(days=n), datetime.min.time()) for n in range(3)]
    first, second, newest = (day.date() for day in days)
    metadata_read = "served|206|100|1|500|||||"
    late = "SELECT version, newest_day, projects FROM warehouse_late ORDER BY version"
    db = DuckDBWarehouse(path)
    try:
        _load(db, "one-day.json", [line(0, days[2], project="alpha")])
        lines = [
            line(1, days[0], project="Demo_Pkg"),
            line(2, days[1], project="demo.pkg"),
            line(3, days[1], project="Beta"),
            metadata_read,
            line(4, days[1], project="zeta"),  # not a download
            line(5, days[2], project="gamma"),  # on the newest day: every project's
        ]
        _load(db, "late.json", lines)
        at_bound = [line(10 + n, days[1], project=f"p{n}") for n in range(3)]
        _load(db, "at-bound.json", [*at_bound, line(20, days[2])])
        past = [line(30 + n, days[0], project=f"q{n}") for n in range(4)]
        _load(db, "past-bound.json", [*past, line(40, days[2])])
        assert db.con.execute(late).fetchall() == [
            (2, newest, ["beta", "demo-pkg"]),
            (3, newest, ["p0", "p1", "p2"]),
        ]
        db.con.execute(f"DROP TABLE {rollups.LATE}")  # as a warehouse of the release before
    finally:
        db.close()
    db = DuckDBWarehouse(path)
    try:
        _load(db, "after.json", [line(50, days[1], project="alpha"), line(51, days[2])])
        assert db.con.execute(late).fetchall() == [(5, newest, ["alpha"])]
        changes = db.con.execute(
            f"SELECT version, first_day FROM {rollups.CHANGES} ORDER BY version"
        ).fetchall()
    finally:
        db.close()
    assert changes == [(1, newest), (2, first), (3, second), (4, first), (5, second)]
    assert _unrecorded_changes(path) == []


def _rows(con: duckdb.DuckDBPyConnection) -> int:
    found = con.execute("SELECT count(*) FROM file_downloads").fetchone()
    assert found is not None
    return int(found[0])


def _load(db: DuckDBWarehouse, name: str, lines: list[str]) -> None:
    db.load("file_downloads", [(name, convert(gz(lines)).downloads)])


def _rollup_rows(con: duckdb.DuckDBPyConnection, where: str = "true") -> tuple[int, int]:
    """Rollup rows, and distinct keys among them, matching ``where``."""
    found = con.execute(
        f"SELECT count(*), count(DISTINCT ({rollups.KEY})) FROM {rollups.ROLLUPS} WHERE {where}"
    ).fetchone()
    assert found is not None
    return int(found[0]), int(found[1])


def test_open_days_have_totals_only_and_a_load_that_settles_days_rolls_them_up(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.duckdb"
    rng = random.Random(5)
    db = DuckDBWarehouse(path)
    try:
        con = db.con
        # Two open days, three loads: the day before them settles; each load's totals wait
        # in the totals tail, no breakdown.
        for index in range(3):
            lines = random_lines(rng, 300, PROJECTS, FIRST, 2, start=index * 300)
            _load(db, f"a{index}.json", lines)
        assert rollups.settled_through(con) == FIRST - timedelta(days=1)
        assert _rollup_rows(con) == (0, 0)
        # A load bringing FIRST + 4 settles FIRST .. FIRST + 2 (no rows on FIRST + 2):
        # rolled up from every load's rows, one row per key, sorted by project and day,
        # in place of the loads' totals.
        later = random_lines(rng, 50, PROJECTS, FIRST + timedelta(days=4), 1, start=5000)
        _load(db, "b.json", later)
        assert rollups.settled_through(con) == FIRST + timedelta(days=2)
        settled = f"day <= DATE '{FIRST + timedelta(days=2)}'"
        count, keys = _rollup_rows(con, settled)
        assert count == keys > 0
        days = con.execute(
            f"SELECT DISTINCT day FROM {rollups.ROLLUPS} WHERE dimension <> '' ORDER BY day"
        ).fetchall()
        assert days == [(FIRST,), (FIRST + timedelta(days=1),)]
        order = con.execute(
            "SELECT count(*) FROM (SELECT (project, day) AS here, lag((project, day)) OVER "
            f"(ORDER BY rowid) AS before FROM {rollups.ROLLUPS} WHERE {settled}) "
            "WHERE here < before"
        ).fetchone()
        assert order == (0,)
        # The next day settles one more day, which has no rows: nothing added there.
        _load(db, "c.json", random_lines(rng, 20, PROJECTS, FIRST + timedelta(days=5), 1))
        assert rollups.settled_through(con) == FIRST + timedelta(days=3)
        assert _rollup_rows(con, f"day <= DATE '{FIRST + timedelta(days=3)}'") == (count, keys)
    finally:
        db.close()
    assert _differences(path) == ([], [])


def _descents(con: duckdb.DuckDBPyConnection, first: date, last: date) -> int:
    """Rows of the rollups of ``first`` .. ``last`` that, in storage order, come after a
    row of a later (project, day): 0 when those days lie in one run sorted by project."""
    found = con.execute(
        "SELECT count(*) FROM (SELECT (project, day) AS here, lag((project, day)) OVER "
        f"(ORDER BY rowid) AS before FROM {rollups.ROLLUPS} "
        f"WHERE day BETWEEN DATE '{first}' AND DATE '{last}') WHERE here < before"
    ).fetchone()
    assert found is not None
    return int(found[0])


@pytest.mark.parametrize("regroup_rows", [rollups.REGROUP_ROWS, 40], ids=["whole", "by-parts"])
def test_completed_weeks_and_months_are_regrouped_as_one_run_by_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, regroup_rows: int
) -> None:
    """A publish a day settles one day at a time; each completed week (Monday to Sunday,
    within a month) and month becomes one run sorted by project, so a project's rollups
    stay in a few row groups (the days of the open week stay a run each); readers' answers
    do not change. In parts of a few projects each (a transaction each), the same."""
    monkeypatch.setattr(rollups, "REGROUP_ROWS", regroup_rows)
    path = tmp_path / "w.duckdb"
    rng = random.Random(8)
    db = DuckDBWarehouse(path)
    first = date(2024, 12, 20)
    try:
        con = db.con
        for index in range(47):  # through 2025-02-04: 2025-02-02 settles
            day = first + timedelta(days=index)
            lines = random_lines(rng, 60, PROJECTS, day, 1, start=index * 100)
            if index < 10 or 16 <= index < 42:  # late rows of settled days, before their
                late = day - timedelta(days=3)  # month is regrouped: folded into its run
                lines += random_lines(rng, 3, PROJECTS, late, 1, start=index * 100 + 60)
            _load(db, f"d{index}.json", lines)
            if index % 9 == 0:
                assert _differences_in(con) == ([], [])
        assert rollups.settled_through(con) == date(2025, 2, 2)
        assert _descents(con, date(2024, 12, 1), date(2024, 12, 31)) == 0
        assert _descents(con, date(2025, 1, 1), date(2025, 1, 31)) == 0
        assert _descents(con, date(2025, 2, 1), date(2025, 2, 2)) == 0  # a week, in February
        assert _descents(con, date(2025, 1, 31), date(2025, 2, 2)) > 0  # two runs
        # Days settled one at a time after the last completed week: a run each, until the
        # week ends.
        for index in range(6):
            day = date(2025, 2, 5) + timedelta(days=index)
            _load(
                db,
                f"e{index}.json",
                random_lines(rng, 60, PROJECTS, day, 1, start=9000 + index * 100),
            )
        assert rollups.settled_through(con) == date(2025, 2, 8)
        assert _descents(con, date(2025, 2, 3), date(2025, 2, 8)) > 0
        _load(db, "f.json", random_lines(rng, 60, PROJECTS, date(2025, 2, 11), 1, start=9900))
        assert _descents(con, date(2025, 2, 3), date(2025, 2, 9)) == 0
    finally:
        db.close()
    assert _differences(path) == ([], [])


def test_a_regroup_that_fails_leaves_the_load_and_its_numbers_standing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Regrouping changes no number, so a failure of it (here: out of memory, as under a
    low ``duckdb.memory_limit``) is logged, naming the setting, and the load stands."""
    db = DuckDBWarehouse(tmp_path / "w.duckdb")
    failures: list[tuple[date, date]] = []

    def fail(con: duckdb.DuckDBPyConnection, first: date, last: date) -> None:
        failures.append((first, last))
        raise duckdb.OutOfMemoryException("Out of Memory Error: failed to pin block")

    try:
        for index in range(4):  # 2025-01-02 .. 05; the Sunday 2025-01-05 settles below
            day = date(2025, 1, 2) + timedelta(days=index)
            _load(db, f"d{index}.json", random_lines(random.Random(index), 40, PROJECTS, day, 1))
        monkeypatch.setattr(rollups, "regroup", fail)
        result = db.load(
            "file_downloads",
            [
                (
                    "e.json",
                    convert(
                        gz(random_lines(random.Random(9), 40, PROJECTS, date(2025, 1, 7), 1))
                    ).downloads,
                )
            ],
        )
        assert result.loaded == ["e.json"]
        assert failures == [(date(2025, 1, 1), date(2025, 1, 5))]  # a week, in January
        assert rollups.settled_through(db.con) == date(2025, 1, 5)
        assert _differences_in(db.con) == ([], [])
    finally:
        db.close()
    assert "duckdb.memory_limit" in caplog.text and "failed to pin block" in caplog.text


def test_a_load_reads_its_new_rows_once_for_totals_spellings_and_days(tmp_path: Path) -> None:
    """The totals, the new spellings and the days come back from the load's ``INSERT``
    itself: no other statement reads the new rows back from the table (a scan of their
    nested fields each, and each statement costs 0.3-0.5 ms however small)."""
    path = tmp_path / "w.duckdb"
    rng = random.Random(4)
    db = DuckDBWarehouse(path)
    real = db.con
    try:
        _load(db, "a.json", random_lines(rng, 300, PROJECTS, FIRST, 2))
        scanned = Scanned(real, tmp_path / "profile.json")
        db.con = cast(duckdb.DuckDBPyConnection, scanned)
        _load(db, "b.json", random_lines(rng, 300, [*PROJECTS, "Brand_New"], FIRST, 2))
        db.con = real
        readers = [sql for sql in scanned.rows if "file_downloads" in sql]
        assert [sql.split()[0] for sql in readers] == ["SELECT", "WITH"]
        assert "next_rowid" in readers[0]  # the marks, read before the insert
        assert rollups.settled_through(real) == FIRST - timedelta(days=1)
        assert real.execute(
            f"SELECT normalized FROM {rollups.PROJECTS} WHERE name = 'Brand_New'"
        ).fetchall() == [("brand-new",)]
        assert _differences_in(real) == ([], [])
    finally:
        db.con = real
        db.close()


def test_a_late_row_for_a_settled_day_appends_its_aggregate(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    rng = random.Random(6)
    db = DuckDBWarehouse(path)
    try:
        con = db.con
        _load(db, "a.json", random_lines(rng, 400, PROJECTS, FIRST, 6))
        assert rollups.settled_through(con) == FIRST + timedelta(days=3)
        before = _rollup_rows(con)
        day = f"day = DATE '{FIRST}'"
        first_day = _rollup_rows(con, day)
        # One late download of a project seen on that day, in versions and installers seen.
        late = random_lines(random.Random(1), 1, ["alpha"], FIRST, 1, start=9000)
        _load(db, "late.json", late)
        assert rollups.settled_through(con) == FIRST + timedelta(days=3)
        # Its aggregate is appended: at most one row per dimension and the total (fewer
        # when not counted as a download), the day's keys otherwise as they were.
        count = _rollup_rows(con)[0]
        assert before[0] <= count <= before[0] + len(rollups.ALL)
        assert _rollup_rows(con, day)[1] >= first_day[1]
        assert count - before[0] == _rollup_rows(con, day)[0] - first_day[0]
        # Rows for open days add their totals only; a load that brings both kinds adds the
        # late ones' breakdowns.
        open_and_late = random_lines(rng, 30, PROJECTS, FIRST + timedelta(days=4), 2, start=9100)
        open_and_late += random_lines(rng, 30, PROJECTS, FIRST + timedelta(days=1), 1, start=9200)
        _load(db, "mixed.json", open_and_late)
        assert con.execute(
            f"SELECT count(*) FROM {rollups.ROLLUPS} WHERE day > DATE '{FIRST + timedelta(3)}' "
            "AND dimension <> ''"
        ).fetchone() == (0,)
    finally:
        db.close()
    assert _differences(path) == ([], [])


def test_a_day_of_no_download_settles_nothing_until_a_download_on_it(tmp_path: Path) -> None:
    """A load learns its days from the totals it appends (one statement fewer per load), so
    a day whose rows are all ranges past byte 0 (metadata reads, not downloads) settles
    nothing; the next load with a download that day settles what it settles. Readers agree
    with the rows throughout, and the tail still counts every row."""
    path = tmp_path / "w.duckdb"
    rng = random.Random(7)
    db = DuckDBWarehouse(path)
    try:
        con = db.con
        _load(db, "a.json", random_lines(rng, 300, PROJECTS, FIRST, 2))
        assert rollups.settled_through(con) == FIRST - timedelta(days=1)
        later = datetime(2024, 12, 24, 12)  # FIRST + 4 days
        reads = [f"served|206|16384|1|{9000 + n}|||||\n{line(7000 + n, later)}" for n in range(5)]
        _load(db, "reads.json", reads)
        assert rollups.settled_through(con) == FIRST - timedelta(days=1)
        assert con.execute("SELECT count(*) FROM file_downloads").fetchone() == (305,)
        assert rollups.marks(con).next_rowid == 305
        assert _differences_in(con) == ([], [])
        _load(db, "download.json", [line(8000, later)])
        assert rollups.settled_through(con) == FIRST + timedelta(days=2)
    finally:
        db.close()
    assert _differences(path) == ([], [])


def test_the_next_rowid_a_load_stores_is_checked_against_the_rows(tmp_path: Path) -> None:
    """Each load stores the rowid its next row gets, which the next load's marks take when
    the table holds that many rows; rows appended otherwise (a release that stores none)
    make the marks find it in the rows again."""
    path = tmp_path / "w.duckdb"
    rng = random.Random(9)
    db = DuckDBWarehouse(path)
    try:
        con = db.con
        _load(db, "a.json", random_lines(rng, 300, PROJECTS, FIRST, 2))
        stored = f"SELECT next_rowid FROM {rollups.VERSION}"
        assert con.execute(stored).fetchone() == (300,)
        assert rollups.marks(con).next_rowid == 300
        con.execute("INSERT INTO file_downloads SELECT * FROM file_downloads LIMIT 7")
        assert con.execute(stored).fetchone() == (300,)
        assert rollups.marks(con).next_rowid == 307
        _load(db, "b.json", random_lines(rng, 50, PROJECTS, FIRST, 2, start=5000))
        assert con.execute(stored).fetchone() == (357,)
        assert rollups.marks(con).next_rowid == 357
    finally:
        db.close()


def test_readers_agree_with_the_rows_while_days_are_open_and_after_they_settle(
    tmp_path: Path,
) -> None:
    """The stats CLI's breakdowns and the stats web's questions, against GROUP BY over the
    rows, with every day open, with some settled, and after a late batch."""
    path = tmp_path / "w.duckdb"
    rng = random.Random(8)
    end = FIRST + timedelta(days=9)
    loads = [
        random_lines(rng, 600, PROJECTS, FIRST, 2, start=0, with_served=True),
        random_lines(rng, 600, PROJECTS, FIRST + timedelta(days=2), 8, start=1000),
        random_lines(rng, 200, PROJECTS, FIRST, 3, start=2000, with_served=True),  # late
    ]
    settled_after = [
        FIRST - timedelta(days=1),
        FIRST + timedelta(days=7),
        FIRST + timedelta(days=7),
    ]
    for index, lines in enumerate(loads):
        db = DuckDBWarehouse(path)
        try:
            _load(db, f"l{index}.json", lines)
            assert rollups.settled_through(db.con) == settled_after[index]
        finally:
            db.close()
        for project in ("demo-pkg", "zope-interface"):
            for field in (None, *rollups.DIMENSIONS):
                for start, last in (
                    (FIRST + timedelta(days=6), end),
                    (None, end),
                    (FIRST, FIRST + timedelta(days=3)),
                ):
                    result = breakdown(path, project, [field] if field else [], start, last)
                    got = {(row[0] if field else "total"): row[-1] for row in result.rows}
                    want = _oracle(path, project, field, start or FIRST, last, Filters())
                    assert got == want, (index, project, field, start)
            with reading(path) as con:
                overall = data.overall(con, project, None, end)
                recent = data.recent(con, project, end, Filters(mirrors=True))
                series = data.categories(con, project, "installer", "value", FIRST, end, Filters())
                total = data.summary(con, project, end, Filters(mirrors=True))["total"]
            per_day = {
                day: (
                    _oracle(path, project, None, day, day, Filters(mirrors=True)).get("total", 0),
                    _oracle(path, project, None, day, day, Filters()).get("total", 0),
                )
                for day in (FIRST + timedelta(days=n) for n in range(10))
            }
            assert overall == [(day, *counts) for day, counts in per_day.items() if counts[0]]
            with reading(path) as con:  # a range that ends among the settled days
                early = data.overall(con, project, FIRST + timedelta(days=1), FIRST + timedelta(3))
            assert early == [
                (day, *counts)
                for day, counts in per_day.items()
                if counts[0] and FIRST < day <= FIRST + timedelta(days=3)
            ]
            assert recent["day"] == per_day[end][0]
            assert recent["month"] == total == sum(counts[0] for counts in per_day.values())
            assert total > 0
            assert sorted(series) == sorted(
                (day, "null" if installer is None else installer, count)
                for day in per_day
                for installer, count in _oracle(
                    path, project, "installer", day, day, Filters()
                ).items()
            )
        top = breakdown(path, None, ["project"], FIRST, end, None, Filters(mirrors=True))
        with reading(path) as con:
            normalized = con.execute(
                f"SELECT {NORM}, count(*) FROM file_downloads WHERE {DOWNLOAD} GROUP BY 1"
            ).fetchall()
        assert sorted(top.rows) == sorted(normalized)


def _tail_from(con: duckdb.DuckDBPyConnection) -> int:
    found = con.execute(f"SELECT tail_from FROM {rollups.VERSION}").fetchone()
    assert found is not None
    return int(found[0])


def _moving_days(rng: random.Random, index: int, count: int) -> list[str]:
    """Load ``index`` of a run whose days move forward one every four loads: its rows on
    the newest two days, and now and then a few late ones for a day settled already."""
    newest = FIRST + timedelta(days=index // 4)
    lines = random_lines(
        rng, count, PROJECTS, newest - timedelta(days=1), 2, start=index * 10_000,
        with_served=True,
    )  # fmt: skip
    if index % 5 == 4:
        late = FIRST + timedelta(days=rng.randrange(max(1, index // 4 - 2)))
        lines += random_lines(rng, 20, PROJECTS, late, 1, start=index * 10_000 + 9000)
    return lines


@pytest.mark.long
@pytest.mark.parametrize("one_statement_bytes", [1 << 30, 0], ids=["one-statement", "read-back"])
def test_the_tail_rolls_up_behind_a_rowid_mark_and_readers_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_statement_bytes: int
) -> None:
    """With a small tail (every three loads or so), across days settling and late batches:
    the mark moves, the open days' breakdowns land in the rollups, and readers and rollups
    equal GROUP BY over the rows after every load; rowids stay dense (the mark relies on
    committed rows taking the next ones). Loads insert with their totals in one statement
    (small ones), or insert and then read their rows back (large ones)."""
    monkeypatch.setattr(rollups, "TAIL_ROWS", 2500)
    monkeypatch.setattr(rollups, "ONE_STATEMENT_BYTES", one_statement_bytes)
    path = tmp_path / "w.duckdb"
    rng = random.Random(21)
    marks = []
    db = DuckDBWarehouse(path)
    try:
        con = db.con
        for index in range(36):
            _load(db, f"t{index}.json", _moving_days(rng, index, 1000))
            marks.append(_tail_from(con))
            dense = con.execute("SELECT count(*) = max(rowid) + 1 FROM file_downloads")
            assert dense.fetchone() == (True,)
            if index % 4 == 3:
                assert _differences_in(con) == ([], [])
        assert marks == sorted(marks) and len(set(marks)) >= 10
        settled = rollups.settled_through(con)
        assert settled == FIRST + timedelta(days=35 // 4 - rollups.OPEN_DAYS)
        open_breakdowns = con.execute(
            f"SELECT count(*) FROM {rollups.OPEN_BREAKDOWNS} WHERE day > ?", [settled]
        ).fetchone()
        assert open_breakdowns is not None and open_breakdowns[0] > 0
        # Kept apart: the table totals questions read has no open day's breakdowns.
        assert con.execute(
            f"SELECT count(*) FROM {rollups.ROLLUPS} WHERE dimension <> '' AND day > ?",
            [settled],
        ).fetchone() == (0,)
        assert con.execute(
            f"SELECT count(*) FROM {rollups.OPEN_BREAKDOWNS} WHERE day <= ?", [settled]
        ).fetchone() == (0,)
    finally:
        db.close()
    assert _ask_random(path, rng, questions=30, days=10) > 0


def test_a_reader_sees_one_snapshot_of_rollups_and_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that read the marks before a load moved them still counts each row once:
    the statement reads the marks itself."""
    monkeypatch.setattr(rollups, "TAIL_ROWS", 1000)
    path = tmp_path / "w.duckdb"
    rng = random.Random(22)
    db = DuckDBWarehouse(path)
    try:
        _load(db, "a.json", random_lines(rng, 600, PROJECTS, FIRST, 2, start=0))
        reader = db.con.cursor()
        source, params = rollups.daily(reader, project="demo-pkg")
        before = _tail_from(db.con)
        _load(db, "b.json", random_lines(rng, 600, PROJECTS, FIRST, 2, start=1000))
        assert _tail_from(db.con) > before
        seen = reader.execute(
            f"SELECT dimension, sum(downloads) FROM ({source}) GROUP BY 1 ORDER BY 1", params
        ).fetchall()
        counted = reader.execute(
            f"SELECT count(*) FROM file_downloads WHERE {NORM} = 'demo-pkg' AND {DOWNLOAD}"
        ).fetchone()
        assert counted is not None and counted[0] > 0
        assert seen == [(name, counted[0]) for name in sorted(rollups.ALL)]
    finally:
        db.close()


def test_a_warehouse_from_before_the_tail_mark_reads_right_and_rebuilds(tmp_path: Path) -> None:
    """One from the release before (no ``tail_from``: open days' breakdowns only in the
    rows) answers right until its next publish, which rebuilds its rollups."""
    path = tmp_path / "w.duckdb"
    _load_random(path, random.Random(24), loads=2, per_load=800)
    con = duckdb.connect(str(path))
    con.execute(f"ALTER TABLE {rollups.VERSION} DROP COLUMN tail_from")
    con.execute(f"UPDATE {rollups.VERSION} SET definition = '4;dimensions-when-settled'")
    con.close()
    end = FIRST + timedelta(days=DAYS - 1)
    for field in (None, "installer", "country"):
        for start in (FIRST, end - timedelta(days=3)):
            result = breakdown(path, "demo-pkg", [field] if field else [], start, end)
            got = {(row[0] if field else "total"): row[-1] for row in result.rows}
            assert got == _oracle(path, "demo-pkg", field, start, end, Filters())
            assert sum(got.values()) > 0
    _assert_rebuilt_when_opened(path)


def _has_version_table(path: Path) -> bool:
    if not path.exists():
        return False
    con = duckdb.connect(str(path), read_only=True)
    try:
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [rollups.VERSION]
        ).fetchone()
    finally:
        con.close()
    return found == (1,)


LOADER = """
import sys
from pathlib import Path
from pythonhosted.warehouse import rollups
from pythonhosted.warehouse.duck import DuckDBWarehouse
rollups.TAIL_ROWS = int(sys.argv[3])
db = DuckDBWarehouse(Path(sys.argv[1]))
for file in sorted(Path(sys.argv[2]).iterdir()):
    db.load("file_downloads", [(file.name, file.read_bytes())])
db.close()
"""


@pytest.mark.long
def test_tail_marks_and_rollups_agree_with_the_rows_after_sigkill_of_loads(
    tmp_path: Path,
) -> None:
    """Loads that roll the tail up, settle days and bring late rows, killed at random
    moments again and again: the marks, the rollups and the rows move together."""
    rng = random.Random(23)
    files = tmp_path / "files"
    files.mkdir()
    expected = 0
    for index in range(40):
        downloads = convert(gz(_moving_days(rng, index, 500))).downloads
        (files / f"{index:03d}.json").write_bytes(downloads)
        expected += downloads.count(b"\n")
    path = tmp_path / "w.duckdb"
    command = [sys.executable, "-c", LOADER, str(path), str(files), "1200"]

    def check() -> None:
        if _has_version_table(path):  # else killed before it made the tables
            assert _differences(path) == ([], [])
            assert _unrecorded_changes(path) == []

    kills = _kill_again_and_again(
        lambda: spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
        path.exists,
        lambda: rng.uniform(0.05, 0.4),
        check,
    )
    final = spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    assert kills >= 3
    assert _differences(path) == ([], [])
    assert _unrecorded_changes(path) == []
    con = duckdb.connect(str(path), read_only=True)
    assert _tail_from(con) > 0
    loaded = con.execute("SELECT count(*) FROM linehaul_loaded_files").fetchone()
    rows = con.execute("SELECT count(*) FROM file_downloads").fetchone()
    con.close()
    assert (loaded, rows) == ((40,), (expected,))


def _totals_tail(con: duckdb.DuckDBPyConnection) -> tuple[object, ...] | None:
    """The totals tail's first and last day, and its rows."""
    return con.execute(
        f"SELECT totals_first, totals_last, (SELECT count(*) FROM file_downloads "
        f"WHERE rowid >= v.totals_from) FROM {rollups.VERSION} v"
    ).fetchone()


def test_the_totals_tail_keeps_to_the_latest_day(tmp_path: Path) -> None:
    """Small loads' totals wait in the tail; a load of a later day rolls the tail before it
    up and begins the next; one across midnight, or a late batch, rolls up with it. Readers
    equal GROUP BY over the rows after each."""
    rng = random.Random(22)
    day = FIRST + timedelta(days=5)
    db = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        con = db.con
        late, next_day = day, day + timedelta(days=1)
        steps: list[tuple[list[str], tuple[object, ...]]] = [
            (random_lines(rng, 200, PROJECTS, day, 1, start=0), (day, day, 200)),
            (random_lines(rng, 100, PROJECTS, day, 1, start=1000), (day, day, 300)),
            (random_lines(rng, 100, PROJECTS, next_day, 1, start=2000), (next_day, next_day, 100)),
            # across midnight: rolled up with the tail
            (random_lines(rng, 50, PROJECTS, day, 2, start=3000), (None, None, 0)),
            (random_lines(rng, 50, PROJECTS, next_day, 1, start=4000), (next_day, next_day, 50)),
            (random_lines(rng, 20, PROJECTS, late, 1, start=5000), (None, None, 0)),  # late
        ]
        for index, (lines, tail) in enumerate(steps):
            _load(db, f"s{index}.json", lines)
            assert _totals_tail(con) == tail, index
            assert _differences_in(con) == ([], []), index
    finally:
        db.close()
