"""One project's uploads in DuckDB's ``distribution_metadata``, found by index, not by scan.

A project page shows the project's latest release, from ``distribution_metadata``: a row per
file ever uploaded, named as its core metadata spells the project. Finding a project's rows
by normalising every row's ``name`` costs a regular expression per upload ever made, on
every page (0.56 s at a million rows; PyPI has tens of millions). So, as ``project_names``
does for downloads, :data:`NAMES` maps each stored spelling to its PEP 503 name, with an
index on the normalised name, and ``distribution_metadata`` has an index on ``name``: a
reader looks up the project's spellings, then its rows, both through the indexes (DuckDB
scans an index when few rows match), and reads only the project's own rows.

:meth:`~pythonhosted.warehouse.duck.DuckDBWarehouse.add_distributions` records the
spellings of the rows it inserts in the same transaction (:func:`record`), and a warehouse
made before the table gets both indexes and the table filled from its rows the next time it
is opened for loading (:func:`ensure`). A reader of such a warehouse, not opened for loading
since, normalises every row's name as before (:func:`uploads`).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from pythonhosted.warehouse import spellings

NAMES = "distribution_names"
DISTRIBUTIONS = "distribution_metadata"
NORMALIZED = "lower(regexp_replace(name, '[-_.]+', '-', 'g'))"  # PEP 503, of a ``name``


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    """Create the spellings table and both indexes if missing, the table filled from the rows
    already loaded. Call inside the writer's transaction, after ``distribution_metadata``
    exists."""
    missing = not _has_names(con)
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {NAMES} (name VARCHAR PRIMARY KEY, normalized VARCHAR "
        "NOT NULL)"
    )
    con.execute(f"CREATE INDEX IF NOT EXISTS {NAMES}_normalized ON {NAMES} (normalized)")
    con.execute(f"CREATE INDEX IF NOT EXISTS {DISTRIBUTIONS}_name ON {DISTRIBUTIONS} (name)")
    if missing:
        con.execute(
            f"INSERT INTO {NAMES} SELECT name, {NORMALIZED} FROM "
            f"(SELECT DISTINCT name FROM {DISTRIBUTIONS})"
        )


def record(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> None:
    """Record the spellings among ``names`` (those of rows just inserted) not recorded yet:
    a key probe each, however many the table holds (:mod:`.spellings`)."""
    spellings.record(con, NAMES, names)


def uploads(con: duckdb.DuckDBPyConnection, project: str) -> list[tuple[str, str | None]]:
    """(version, summary) of each uploaded file of ``project`` (normalised), oldest first.

    Two statements, each an index lookup by constants: DuckDB plans a subquery's names as a
    join, which scans the whole table."""
    if not _has_names(con):  # made by an older release and not loaded into since
        return _fetch(con, f"{NORMALIZED} = ?", [project])
    spellings = [
        row[0]
        for row in con.execute(
            f"SELECT name FROM {NAMES} WHERE normalized = ?", [project]
        ).fetchall()
    ]
    if not spellings:
        return []
    return _fetch(con, f"name IN ({', '.join('?' for _ in spellings)})", spellings)


def _fetch(
    con: duckdb.DuckDBPyConnection, where: str, params: list[str]
) -> list[tuple[str, str | None]]:
    rows = con.execute(
        f"SELECT version, summary FROM {DISTRIBUTIONS} WHERE {where} ORDER BY upload_time",
        params,
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def _has_names(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_name = ?", [NAMES]
    ).fetchone()
    return found is not None
