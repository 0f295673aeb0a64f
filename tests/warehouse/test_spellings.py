"""A load records its new spellings by probing the key: it reads the rows of the spellings it
brings, not every stored name (counted by DuckDB's profiler, never timed)."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path
from typing import cast

import duckdb

from pythonhosted.linehaul.batch import convert
from pythonhosted.warehouse import rollups, spellings, suggestions
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.uploads import NAMES
from support.linehaul_data import gz
from support.scanned import Scanned
from support.stats_data import random_lines
from support.uploads_data import upload

STORED = 200_000  # names recorded before the load: what it must not read
KNOWN = [f"Project_{n * 3319}" for n in range(60)]  # stored, in another spelling than normal
NEW = ["Brand_New", "brand.new", "Fresh-Pkg", "project-7"]  # two projects, and a new spelling


def _fill(con: duckdb.DuckDBPyConnection, table: str, stored: int = STORED) -> None:
    """``stored`` names ``Project_<n>`` -> ``project-<n>`` (their variants too: the names
    table is built directly, not loaded), checkpointed as a warehouse's would be."""
    con.execute(
        f"INSERT INTO {table} SELECT 'Project_' || n, 'project-' || n FROM range({stored}) AS t(n)"
    )
    con.execute("CHECKPOINT")


def test_a_load_reads_the_rows_of_its_own_spellings_among_200_000(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    real = warehouse.con
    try:
        _fill(real, rollups.PROJECTS)
        lines = random_lines(random.Random(7), 2000, [*KNOWN, *NEW], date(2025, 1, 1), 2)
        downloads = convert(gz(lines)).downloads
        scanned = Scanned(real, tmp_path / "profile.json")
        warehouse.con = cast(duckdb.DuckDBPyConnection, scanned)
        assert warehouse.load("file_downloads", [("a.json", downloads)]).rows == 2000
        warehouse.con = real
        # The 60 known spellings' rows, then the new names' spellings, of 200,000: the
        # anti-join this replaced read every one.
        assert scanned.scanned(rollups.PROJECTS) == len(KNOWN)
        new_names = next(sql for sql in scanned.rows if "list_contains(?, normalized)" in sql)
        assert scanned.rows[new_names] == 5  # the new spellings and project-7's other one
        _assert_the_new_spellings_are_recorded(real, STORED)
        # The same statement as before, for scale: it reads every stored name.
        old = Scanned(real, tmp_path / "old.json")
        old.execute(
            f"SELECT project FROM (SELECT unnest(?) AS project) "
            f"WHERE project NOT IN (SELECT name FROM {rollups.PROJECTS})",
            [KNOWN],
        ).fetchall()
        assert old.scanned(rollups.PROJECTS) >= STORED
    finally:
        warehouse.con = real
        warehouse.close()


def _assert_the_new_spellings_are_recorded(con: duckdb.DuckDBPyConnection, stored: int) -> None:
    """NEW's spellings (and project-7's other one) are stored beside the ``stored`` names,
    and close names know the two new projects (project-7 was already one)."""
    assert con.execute(
        f"SELECT name, normalized FROM {rollups.PROJECTS} WHERE "
        "list_contains(['brand-new', 'fresh-pkg', 'project-7'], normalized) ORDER BY name"
    ).fetchall() == [
        ("Brand_New", "brand-new"),
        ("Fresh-Pkg", "fresh-pkg"),
        ("Project_7", "project-7"),
        ("brand.new", "brand-new"),
        ("project-7", "project-7"),
    ]
    assert con.execute(f"SELECT count(*) FROM {rollups.PROJECTS}").fetchone() == (
        stored + len(NEW),
    )
    assert suggestions.close_names(con, "brand-neww") == ["brand-new"]
    assert suggestions.close_names(con, "fresh-pk") == ["fresh-pkg"]


def test_a_load_among_few_names_finds_its_new_ones_in_one_anti_join(tmp_path: Path) -> None:
    """Below ``JOINED_BELOW`` stored names, reading them all is cheaper than a lookup per
    spelling: one statement reads the table once and returns only the new spellings, which
    are recorded as after lookups."""
    stored = spellings.JOINED_BELOW // 10
    known = [f"Project_{n * 83}" for n in range(60)]
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    real = warehouse.con
    try:
        _fill(real, rollups.PROJECTS, stored)
        lines = random_lines(random.Random(7), 2000, [*known, *NEW], date(2025, 1, 1), 2)
        scanned = Scanned(real, tmp_path / "profile.json")
        warehouse.con = cast(duckdb.DuckDBPyConnection, scanned)
        assert warehouse.load("file_downloads", [("a.json", convert(gz(lines)).downloads)]).rows
        warehouse.con = real
        probes = f"FROM {rollups.PROJECTS} WHERE list_contains(?, name)"
        assert not [sql for sql in scanned.rows if probes in sql]
        anti_join = [sql for sql in scanned.rows if "NOT IN (SELECT name" in sql]
        assert len(anti_join) == 1 and scanned.rows[anti_join[0]] >= stored
        _assert_the_new_spellings_are_recorded(real, stored)
    finally:
        warehouse.con = real
        warehouse.close()


def test_a_batch_of_uploads_reads_the_rows_of_its_own_spellings(tmp_path: Path) -> None:
    """Past 50 names, ``INSERT OR IGNORE`` read every stored spelling."""
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    real = warehouse.con
    try:
        _fill(real, NAMES)
        rows = [upload(name, "1.0", number) for number, name in enumerate([*KNOWN, *NEW])]
        scanned = Scanned(real, tmp_path / "profile.json")
        warehouse.con = cast(duckdb.DuckDBPyConnection, scanned)
        assert len(warehouse.add_distributions(rows)) == len(KNOWN) + len(NEW)
        warehouse.con = real
        assert scanned.scanned(NAMES) == len(KNOWN)
        assert real.execute(f"SELECT count(*) FROM {NAMES}").fetchone() == (STORED + len(NEW),)
        assert real.execute(
            f"SELECT name FROM {NAMES} WHERE normalized = 'brand-new' ORDER BY name"
        ).fetchall() == [("Brand_New",), ("brand.new",)]
    finally:
        warehouse.con = real
        warehouse.close()


def test_more_spellings_than_lookups_are_joined_and_recorded_once(tmp_path: Path) -> None:
    """Past ``PROBES`` spellings the table is read once (a join): the same outcome."""
    con = duckdb.connect(str(tmp_path / "names.duckdb"))
    con.execute(f"CREATE TABLE {NAMES} (name VARCHAR PRIMARY KEY, normalized VARCHAR NOT NULL)")
    con.execute(f"CREATE INDEX names_normalized ON {NAMES} (normalized)")
    con.execute(f"INSERT INTO {NAMES} SELECT 'P_' || n, 'p-' || n FROM range(10_000) AS t(n)")
    for count in (spellings.PROBES, spellings.PROBES + 1, 3 * spellings.PROBES):
        names = [f"P_{n}" for n in range(count - 3)] + [f"p.{count}-new", "P-1", "p_2"]
        assert spellings.record(con, NAMES, [*names, *names]) == [f"p-{count}-new"]
        assert spellings.record(con, NAMES, names) == []
    assert con.execute(f"SELECT count(*) FROM {NAMES}").fetchone() == (10_000 + 3 + 2,)
