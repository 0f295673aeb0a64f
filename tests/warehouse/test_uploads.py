"""A project's uploads come out of ``distribution_metadata`` by index: a project page reads
the project's own rows, not every upload ever recorded, and a batch of uploads probes the
filenames it brings, not every filename recorded."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import duckdb

from pythonhosted.stats_web.data import latest_release
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.uploads import DISTRIBUTIONS, NAMES
from support.scanned import Scanned
from support.uploads_data import upload

HISTORY = 400  # uploads of other projects: what a read must not depend on


def _history() -> list[bytes]:
    return [upload(f"Project_{n % 100}", f"1.{n}", n) for n in range(HISTORY)]


def _demo() -> list[bytes]:
    """Three spellings of one project: 2.0 is its latest final release."""
    return [
        upload("Demo_Pkg", "1.0", HISTORY + 1, "first"),
        upload("demo.pkg", "2.0", HISTORY + 2, "The demo"),
        upload("DEMO-pkg", "2.1rc1", HISTORY + 3, "a pre-release"),
    ]


def test_the_latest_release_reads_only_the_projects_uploads(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    warehouse = DuckDBWarehouse(path)
    assert len(warehouse.add_distributions(_history()[:200])) == 200
    assert len(warehouse.add_distributions([*_history()[200:], *_demo()])) == HISTORY - 200 + 3
    warehouse.close()
    with reading(path) as con:
        scanned = Scanned(con, tmp_path / "profile.json")
        answer = latest_release(cast(duckdb.DuckDBPyConnection, scanned.con), "demo-pkg")
        scanned.take()  # the profile of the statement run last
        assert answer == {"version": "2.0", "summary": "The demo"}
        # The uploads statement read the project's three rows, not the 403 of the table.
        assert scanned.scanned(DISTRIBUTIONS) == 3
        assert latest_release(con, "no-such-project") is None


def test_a_batch_of_uploads_probes_its_own_filenames(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    real = warehouse.con
    try:
        warehouse.add_distributions(_history())
        scanned = Scanned(real, tmp_path / "profile.json")
        warehouse.con = cast(duckdb.DuckDBPyConnection, scanned)
        again = _history()[:1]  # loaded before: skipped by its key
        assert warehouse.add_distributions([*again, *_demo()[:1]]) == [
            f"Demo_Pkg-1.0-{HISTORY + 1}.tar.gz"
        ]
        # The spool's two rows and the one key found: not the table's 400 filenames.
        assert scanned.scanned(DISTRIBUTIONS) == 3
        assert real.execute(f"SELECT count(*) FROM {DISTRIBUTIONS}").fetchone() == (HISTORY + 1,)
        assert real.execute(
            f"SELECT name FROM {NAMES} WHERE normalized = 'demo-pkg'"
        ).fetchall() == [("Demo_Pkg",)]
    finally:
        warehouse.con = real
        warehouse.close()


def test_a_warehouse_made_before_the_spellings_gets_them_when_opened(tmp_path: Path) -> None:
    """An older warehouse has no spellings table: a reader scans as before, and opening it for
    loading records every spelling its rows hold."""
    path = tmp_path / "w.duckdb"
    warehouse = DuckDBWarehouse(path)
    warehouse.add_distributions([*_history(), *_demo()])
    warehouse.con.execute(f"DROP TABLE {NAMES}")
    warehouse.close()
    with reading(path) as con:
        assert latest_release(con, "demo-pkg") == {"version": "2.0", "summary": "The demo"}
    DuckDBWarehouse(path).close()
    with reading(path) as con:
        assert con.execute(
            f"SELECT name FROM {NAMES} WHERE normalized = 'demo-pkg' ORDER BY name"
        ).fetchall() == [("DEMO-pkg",), ("Demo_Pkg",), ("demo.pkg",)]
        assert con.execute(f"SELECT count(*) FROM {NAMES}").fetchone() == (103,)
        assert latest_release(con, "demo-pkg") == {"version": "2.0", "summary": "The demo"}
