"""Daily rollups of ``file_downloads``, so stats cost O(days) instead of O(rows).

``download_rollups`` holds, per UTC day, project (PEP 503-normalised), mirror flag and CI
flag (``details.ci`` as stored: true, false or null), the downloads in total (``dimension``
``''``) and per value of each of :data:`DIMENSIONS` (``version``, ``installer``, ``python``
major.minor, ``system``, ``country``). ``project_names`` maps each stored spelling of a
project to its normalised name (raw-row queries filter by spelling, which keeps DuckDB's
filter pushdown), and ``warehouse_version`` counts the loads that changed the data (the
stats web's ETags and caches follow it) with the time of the latest.

Maintenance happens inside the load's transaction (:class:`~.duck.DuckDBWarehouse`): the
rows just inserted are the ones with a ``rowid`` at or above the table's highest before the
insert (DuckDB numbers appended rows after every existing one, committed or not), so their
aggregate is merged into the rollups (``MERGE``: add to a matching key, insert a new one)
and the version bumped before the commit. A kill at any point leaves rows, rollups and
version all old or all new. The merge only touches the days being loaded, whose row groups
DuckDB finds through its min/max zone maps, so it costs about the same at any table size.

:func:`rebuild` recomputes everything from the rows, sorted by project and day so a
project's rollups sit in few row groups. It runs on ``linehaul rollup --rebuild`` and, by
itself, when a warehouse opened for loading has a rollup definition other than
:data:`DEFINITION` (an older release, or a changed mirror list), so rollups never describe
rows by rules the code no longer has.
"""

from __future__ import annotations

import duckdb

from pythonhosted.warehouse.mirrors import MIRRORS, mirror_sql

ROLLUPS = "download_rollups"
PROJECTS = "project_names"
VERSION = "warehouse_version"
# PEP 503: runs of -, _ and . become one -, lower case.
NORMALIZED = "lower(regexp_replace(project, '[-_.]+', '-', 'g'))"
PYTHON_MINOR = "NULLIF(regexp_extract(details.python, '^[0-9]+\\.[0-9]+'), '')"
DIMENSIONS: dict[str, str] = {
    "version": "file.version",
    "installer": "details.installer.name",
    "python": PYTHON_MINOR,
    "system": "details.system.name",
    "country": "country_code",
}
DEFINITION = f"1;dimensions={','.join(DIMENSIONS)};mirrors={','.join(MIRRORS)}"

_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {ROLLUPS} (day DATE NOT NULL, project VARCHAR NOT NULL, "
    "dimension VARCHAR NOT NULL, value VARCHAR, mirror BOOLEAN NOT NULL, ci BOOLEAN, "
    "downloads BIGINT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {PROJECTS} (name VARCHAR PRIMARY KEY, "
    "normalized VARCHAR NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {VERSION} (version BIGINT NOT NULL, "
    "published_at TIMESTAMP, definition VARCHAR NOT NULL)",
)


def aggregate_sql(where: str) -> str:
    """Rollup rows for the ``file_downloads`` rows matching ``where``: one grouping set per
    dimension plus the total, in one scan."""
    columns = ", ".join(f"{sql} AS {quote(name)}" for name, sql in DIMENSIONS.items())
    base = "day, project, mirror, ci"
    sets = ", ".join([f"({base})", *(f"({base}, {quote(name)})" for name in DIMENSIONS)])
    dimension = " ".join(f"WHEN grouping({quote(n)}) = 0 THEN '{n}'" for n in DIMENSIONS)
    value = " ".join(f"WHEN grouping({quote(n)}) = 0 THEN {quote(n)}" for n in DIMENSIONS)
    return (
        f"SELECT day, project, CASE {dimension} ELSE '' END AS dimension, "
        f"CASE {value} END AS value, mirror, ci, count(*) AS downloads FROM ("
        f'SELECT CAST("timestamp" AS DATE) AS day, {NORMALIZED} AS project, '
        f"{mirror_sql()} AS mirror, details.ci AS ci, {columns} "
        f"FROM file_downloads WHERE {where}) GROUP BY GROUPING SETS ({sets})"
    )


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ensure(con: duckdb.DuckDBPyConnection) -> bool:
    """Create the tables if missing; True when the rollups must be rebuilt (made by another
    definition, or missing beside rows). Call inside the writer's transaction."""
    for sql in _CREATE:
        con.execute(sql)
    found = con.execute(f"SELECT definition FROM {VERSION}").fetchone()
    if found is None:
        con.execute(f"INSERT INTO {VERSION} VALUES (0, NULL, ?)", [DEFINITION])
        has_rows = con.execute("SELECT 1 FROM file_downloads LIMIT 1").fetchone() is not None
        return has_rows
    return bool(found[0] != DEFINITION)


def first_new_rowid(con: duckdb.DuckDBPyConnection) -> int:
    """The rowid the next appended row of ``file_downloads`` will have at least."""
    found = con.execute("SELECT max(rowid) FROM file_downloads").fetchone()
    return 0 if found is None or found[0] is None else int(found[0]) + 1


def merge_new_rows(con: duckdb.DuckDBPyConnection, first_rowid: int) -> None:
    """Add the rows appended since ``first_rowid`` to the rollups and project names."""
    where = f"rowid >= {int(first_rowid)}"
    con.execute(
        f"MERGE INTO {ROLLUPS} AS r USING ({aggregate_sql(where)}) AS d "
        "ON r.day = d.day AND r.project = d.project AND r.dimension = d.dimension "
        "AND r.value IS NOT DISTINCT FROM d.value AND r.mirror = d.mirror "
        "AND r.ci IS NOT DISTINCT FROM d.ci "
        "WHEN MATCHED THEN UPDATE SET downloads = r.downloads + d.downloads "
        "WHEN NOT MATCHED THEN INSERT (day, project, dimension, value, mirror, ci, downloads) "
        "VALUES (d.day, d.project, d.dimension, d.value, d.mirror, d.ci, d.downloads)"
    )
    _add_names(con, where)


def _add_names(con: duckdb.DuckDBPyConnection, where: str) -> None:
    con.execute(
        f"INSERT OR IGNORE INTO {PROJECTS} SELECT DISTINCT project, {NORMALIZED} "
        f"FROM file_downloads WHERE {where}"
    )


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute rollups and names from every row (inside the caller's transaction)."""
    con.execute(f"DELETE FROM {ROLLUPS}")
    con.execute(f"DELETE FROM {PROJECTS}")
    con.execute(f"INSERT INTO {ROLLUPS} {aggregate_sql('true')} ORDER BY project, day")
    _add_names(con, "true")
    con.execute(f"UPDATE {VERSION} SET definition = ?", [DEFINITION])
    bump(con)


def bump(con: duckdb.DuckDBPyConnection) -> None:
    """A new data version: caches and ETags keyed on the old one are stale after commit."""
    con.execute(f"UPDATE {VERSION} SET version = version + 1, published_at = now()")
