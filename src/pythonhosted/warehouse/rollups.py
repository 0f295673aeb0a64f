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
aggregate is *appended* to the rollups and the version bumped before the commit. A kill at
any point leaves rows, rollups and version all old or all new. A key may so have several
rows (one per load that saw it), and every reader sums them. Appending is what keeps the
cost down: merging into existing keys (``MERGE``) cost a load 2.5 times its CPU time at
commit, as DuckDB applies updates row by row (BENCHMARKS.md).

Days that have settled are **compacted**: when a load brings downloads of a day more than
:data:`OPEN_DAYS` days after the last compaction, the days in between have their rows summed
into one per key and rewritten sorted by project, in the same transaction, so each day is
rewritten about once and a project's rollups sit in few row groups (DuckDB skips the rest by
their min/max). A load with late rows for a compacted day compacts that day again.

:func:`rebuild` recomputes everything from the rows, sorted by project and day. It runs on
``linehaul rollup --rebuild`` and, by itself, when a warehouse opened for loading has a
rollup definition other than :data:`DEFINITION` (an older release, or a changed mirror
list), so rollups never describe rows by rules the code no longer has.
"""

from __future__ import annotations

from datetime import date, timedelta

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
DEFINITION = f"2;dimensions={','.join(DIMENSIONS)};mirrors={','.join(MIRRORS)}"

_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {ROLLUPS} (day DATE NOT NULL, project VARCHAR NOT NULL, "
    "dimension VARCHAR NOT NULL, value VARCHAR, mirror BOOLEAN NOT NULL, ci BOOLEAN, "
    "downloads BIGINT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {PROJECTS} (name VARCHAR PRIMARY KEY, "
    "normalized VARCHAR NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {VERSION} (version BIGINT NOT NULL, "
    "published_at TIMESTAMP, definition VARCHAR NOT NULL, compacted_through DATE)",
)
OPEN_DAYS = 2  # the latest day loaded and the one before stay open for late batches
KEY = "day, project, dimension, value, mirror, ci"


def aggregate_sql(where: str, *, one_row_per_key: bool = True) -> str:
    """Rollup rows for the ``file_downloads`` rows matching ``where``.

    One scan, a grouping set per dimension plus the total, over the values as stored; names
    are normalised and Python versions cut to major.minor afterwards, on the groups (far
    fewer than the rows for any project with downloads to speak of). Two spellings of a
    name, or two patch releases of a Python, then give two rows with one key: summed again
    when ``one_row_per_key``, left for the readers (who sum anyway) when not.
    """
    raw = {**DIMENSIONS, "python": "details.python"}
    columns = ", ".join(f"{sql} AS {quote(name)}" for name, sql in raw.items())
    base = "day, project, mirror, ci"
    sets = ", ".join([f"({base})", *(f"({base}, {quote(name)})" for name in DIMENSIONS)])
    dimension = " ".join(f"WHEN grouping({quote(n)}) = 0 THEN '{n}'" for n in DIMENSIONS)
    value = " ".join(f"WHEN grouping({quote(n)}) = 0 THEN {quote(n)}" for n in DIMENSIONS)
    python = PYTHON_MINOR.replace("details.python", "value")
    groups = (
        f"SELECT day, project, CASE {dimension} ELSE '' END AS dimension, "
        f"CASE {value} END AS value, mirror, ci, count(*) AS downloads FROM ("
        f'SELECT CAST("timestamp" AS DATE) AS day, project, '
        f"{mirror_sql()} AS mirror, details.ci AS ci, {columns} "
        f"FROM file_downloads WHERE {where}) GROUP BY GROUPING SETS ({sets})"
    )
    normalized = (
        f"SELECT day, {NORMALIZED} AS project, dimension, "
        f"CASE WHEN dimension = 'python' THEN {python} ELSE value END AS value, mirror, ci, "
        f"downloads FROM ({groups})"
    )
    if not one_row_per_key:
        return normalized
    return f"SELECT {KEY}, sum(downloads)::BIGINT AS downloads FROM ({normalized}) GROUP BY ALL"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ensure(con: duckdb.DuckDBPyConnection) -> bool:
    """Create the tables if missing; True when the rollups must be rebuilt (made by another
    definition, or missing beside rows). Call inside the writer's transaction."""
    for sql in _CREATE:
        con.execute(sql)
    con.execute(f"ALTER TABLE {VERSION} ADD COLUMN IF NOT EXISTS compacted_through DATE")
    found = con.execute(f"SELECT definition FROM {VERSION}").fetchone()
    if found is None:
        con.execute(f"INSERT INTO {VERSION} VALUES (0, NULL, ?, NULL)", [DEFINITION])
        has_rows = con.execute("SELECT 1 FROM file_downloads LIMIT 1").fetchone() is not None
        return has_rows
    return bool(found[0] != DEFINITION)


def first_new_rowid(con: duckdb.DuckDBPyConnection) -> int:
    """The rowid the next appended row of ``file_downloads`` will have at least."""
    found = con.execute("SELECT max(rowid) FROM file_downloads").fetchone()
    return 0 if found is None or found[0] is None else int(found[0]) + 1


def add_new_rows(con: duckdb.DuckDBPyConnection, first_rowid: int) -> None:
    """Append the aggregate of the rows appended since ``first_rowid``, record new project
    spellings, and compact the days that have settled (see the module doc)."""
    where = f"rowid >= {int(first_rowid)}"
    con.execute(f"INSERT INTO {ROLLUPS} {aggregate_sql(where, one_row_per_key=False)}")
    _add_names(con, where)
    days = [
        row[0]
        for row in con.execute(
            f'SELECT DISTINCT CAST("timestamp" AS DATE) FROM file_downloads WHERE {where}'
        ).fetchall()
    ]
    found = con.execute(f"SELECT compacted_through FROM {VERSION}").fetchone()
    if not days or found is None:
        return
    compacted: date | None = found[0]
    settled = max(days) - timedelta(days=OPEN_DAYS)
    late = [day for day in days if compacted is not None and day <= compacted]
    if compacted is None or compacted < settled:
        compact(con, compacted, settled, late)
    elif late:
        compact(con, compacted, compacted, late)


def compact(
    con: duckdb.DuckDBPyConnection, after: date | None, through: date, late: list[date]
) -> None:
    """Sum the rollup rows of the days after ``after`` (all when None) through ``through``,
    and of the ``late`` days (compacted before, with rows added since), into one row per
    key, sorted by project and day."""
    where = "day <= ?" if after is None else "(day > ? AND day <= ?)"
    params: list[object] = [through] if after is None else [after, through]
    if late:
        where += " OR list_contains(?, day)"
        params.append(late)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE rollup_compaction AS SELECT {KEY}, "
        f"sum(downloads)::BIGINT AS downloads FROM {ROLLUPS} WHERE {where} GROUP BY ALL",
        params,
    )
    con.execute(f"DELETE FROM {ROLLUPS} WHERE {where}", params)
    con.execute(f"INSERT INTO {ROLLUPS} SELECT * FROM rollup_compaction ORDER BY project, day")
    con.execute("DROP TABLE rollup_compaction")
    con.execute(f"UPDATE {VERSION} SET compacted_through = ?", [max([through, *late])])


def _add_names(con: duckdb.DuckDBPyConnection, where: str) -> None:
    con.execute(
        f"INSERT OR IGNORE INTO {PROJECTS} SELECT project, {NORMALIZED} "
        f"FROM (SELECT DISTINCT project FROM file_downloads WHERE {where})"
    )


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute rollups and names from every row (inside the caller's transaction)."""
    con.execute(f"DELETE FROM {ROLLUPS}")
    con.execute(f"DELETE FROM {PROJECTS}")
    con.execute(f"INSERT INTO {ROLLUPS} {aggregate_sql('true')} ORDER BY project, day")
    _add_names(con, "true")
    settled = con.execute(
        f"SELECT CAST(max(day) - INTERVAL {OPEN_DAYS} DAY AS DATE) FROM {ROLLUPS}"
    ).fetchone()
    con.execute(
        f"UPDATE {VERSION} SET definition = ?, compacted_through = ?",
        [DEFINITION, settled[0] if settled else None],
    )
    bump(con)


def bump(con: duckdb.DuckDBPyConnection) -> None:
    """A new data version: caches and ETags keyed on the old one are stale after commit."""
    con.execute(f"UPDATE {VERSION} SET version = version + 1, published_at = now()")
