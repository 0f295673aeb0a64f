"""Daily rollups of ``file_downloads``, so stats cost O(days) instead of O(rows).

What counts as a download (:data:`COUNTED`): a row whose response sent the file's first
byte, a 200 or a 206 whose range starts at byte 0, and every row of a reference log line
(they do not say). Installers reading a wheel's metadata by ranges (uv: the last 16 KiB, then
the METADATA member; pip's lazy wheels: the tail) never read byte 0 of a file larger than
that read, so their reads are not downloads; a resumed or segmented download reads byte 0
once (its first range, or its first plain GET), so it counts once. A file smaller than the
tail read is read whole by it, and that read counts.

``download_rollups`` holds, per UTC day, project (PEP 503-normalised), mirror flag and CI
flag (``details.ci`` as stored: true, false or null), the downloads in total (``dimension``
``''``) and per value of each of :data:`DIMENSIONS` (``version``, ``installer``, ``python``
major.minor, ``system``, ``country``). ``project_names`` maps each stored spelling of a
project to its normalised name (raw-row queries filter by spelling, which keeps DuckDB's
filter pushdown), and ``warehouse_version`` counts the loads that changed the data (the
stats web's ETags and caches follow it) with the time of the latest.

**Breakdowns are rolled up once a day settles.** The latest day loaded and the
:data:`OPEN_DAYS` ``- 1`` before it are *open*: batches for them still arrive.
``warehouse_version.compacted_through`` is the last settled day. The rollups hold the totals
(``dimension`` ``''``) of every day, and the breakdowns (the :data:`DIMENSIONS`) of settled
days only. Readers go through :func:`daily`, which adds the open days' breakdowns aggregated
from the rows on the fly (a couple of days of rows, in the table's last row groups since
loads append in time order, so DuckDB skips the rest by their min/max; and only the projects
and dimensions asked for). So:

- a load appends the totals of its rows (one grouping set, about 0.1 rollup rows per
  download) and, for rows of days settled already (late batches), their breakdowns too;
  a key may so have several rows, and every reader sums them;
- a load that brings a day that settles further days rolls those days up from their rows
  once, in place of the totals their loads appended, sorted by project (so a project's
  rollups sit in few row groups, and DuckDB skips the rest), and ``compacted_through``
  moves on.

All of it happens in the load's transaction (:class:`~.duck.DuckDBWarehouse`), so rows,
rollups and ``compacted_through`` are all old or all new after a kill at any point: in every
snapshot the totals sum to the rows for every day, the breakdowns for every day up to
``compacted_through``. That day only moves forward, so a reader that reads it and then
queries (two snapshots) is still right. The rows a load just inserted are the ones with a
``rowid`` at or above the table's highest before the insert (DuckDB numbers appended rows
after every existing one, committed or not).

Why: each load used to append the aggregate of its rows in every dimension (about 1.3
rollup rows per download, as a load spreads over thousands of projects), which cost a load
a quarter of its time (BENCHMARKS.md); a day aggregated once from all its rows costs a
fraction of that. Totals stay per load because they are cheap and most questions (the API's
``recent`` and ``overall``, badges, top projects, ``stats --days``) ask only for them, which
then never read rows; reading the open days' rows for every question made those answers
ten times slower.

:func:`rebuild` recomputes everything from the rows, sorted by project and day. It runs on
``linehaul rollup --rebuild`` and, by itself, when a warehouse opened for loading has a
rollup definition other than :data:`DEFINITION` (an older release, or a changed mirror
list), so rollups never describe rows by rules the code no longer has.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

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
COUNTED = "coalesce(response.range_start, 0) = 0"
"""SQL (DuckDB and BigQuery): the row is a download (see the module doc)."""
DEFINITION = (
    f"4;dimensions-when-settled;dimensions={','.join(DIMENSIONS)};mirrors={','.join(MIRRORS)};"
    f"counted={COUNTED}"
)

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
ALL = ("", *DIMENSIONS)  # the total and each dimension
KEY = "day, project, dimension, value, mirror, ci"


def aggregate_sql(
    where: str, *, one_row_per_key: bool = True, dimensions: Sequence[str] = ALL
) -> str:
    """Rollup rows for the ``file_downloads`` rows matching ``where``, of ``dimensions``
    ('' the total).

    One scan, a grouping set per dimension, over the values as stored; names are normalised
    and Python versions cut to major.minor afterwards, on the groups (far fewer than the rows
    for any project with downloads to speak of). Two spellings of a name, or two patch
    releases of a Python, then give two rows with one key: summed again when
    ``one_row_per_key``, left for the readers (who sum anyway) when not.
    """
    named = [name for name in DIMENSIONS if name in dimensions]
    raw = {name: ("details.python" if name == "python" else DIMENSIONS[name]) for name in named}
    columns = "".join(f", {sql} AS {quote(name)}" for name, sql in raw.items())
    base = "day, project, mirror, ci"
    sets = [f"({base}, {quote(name)})" for name in named]
    if "" in dimensions:
        sets.insert(0, f"({base})")
    if named:
        dimension = " ".join(f"WHEN grouping({quote(n)}) = 0 THEN '{n}'" for n in named)
        value = " ".join(f"WHEN grouping({quote(n)}) = 0 THEN {quote(n)}" for n in named)
        labels = f"CASE {dimension} ELSE '' END AS dimension, CASE {value} END AS value"
    else:
        labels = "'' AS dimension, CAST(NULL AS VARCHAR) AS value"
    python = PYTHON_MINOR.replace("details.python", "value")
    groups = (
        f"SELECT day, project, {labels}, mirror, ci, count(*) AS downloads FROM ("
        f'SELECT CAST("timestamp" AS DATE) AS day, project, '
        f"{mirror_sql()} AS mirror, details.ci AS ci{columns} "
        f"FROM file_downloads WHERE ({where}) AND {COUNTED}) "
        f"GROUP BY GROUPING SETS ({', '.join(sets)})"
    )
    normalized = (
        f"SELECT day, {NORMALIZED} AS project, dimension, "
        f"CASE WHEN dimension = 'python' THEN {python} ELSE value END AS value, mirror, ci, "
        f"downloads FROM ({groups})"
    )
    if not one_row_per_key:
        return normalized
    return f"SELECT {KEY}, sum(downloads)::BIGINT AS downloads FROM ({normalized}) GROUP BY ALL"


def breakdowns_sql(where: str, dimensions: Sequence[str]) -> str:
    """:func:`aggregate_sql` of the named ``dimensions`` (not the total), for the few rows a
    reader asks about: one ``GROUP BY`` of every dimension's value at once, then unpivoted
    and summed per dimension. DuckDB's grouping sets cost a fixed 10-15 ms for five sets
    even over a few dozen rows (a hash table each); this costs a third of that for a
    long-tail project (BENCHMARKS.md). A load's rollups keep grouping sets, which do better
    over a day's rows."""
    columns = "".join(f", {DIMENSIONS[name]} AS {quote(name)}" for name in dimensions)
    names = ", ".join(quote(name) for name in dimensions)
    cells = (
        f'SELECT CAST("timestamp" AS DATE) AS day, {NORMALIZED} AS project, '
        f"{mirror_sql()} AS mirror, details.ci AS ci{columns}, count(*) AS downloads "
        f"FROM file_downloads WHERE ({where}) AND {COUNTED} GROUP BY ALL"
    )
    return (
        f"SELECT {KEY}, sum(downloads)::BIGINT AS downloads FROM ({cells}) "
        f"UNPIVOT INCLUDE NULLS (value FOR dimension IN ({names})) GROUP BY ALL"
    )


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


def settled_through(con: duckdb.DuckDBPyConnection) -> date | None:
    """The last day the rollups hold (``compacted_through``); None when none settled yet,
    or the warehouse predates the column."""
    try:
        found = con.execute(f"SELECT compacted_through FROM {VERSION}").fetchone()
    except duckdb.BinderException:
        return None
    return found[0] if found else None


def daily(
    con: duckdb.DuckDBPyConnection,
    *,
    project: str | None = None,
    among: Sequence[str] | None = None,
    dimensions: Sequence[str] = ALL,
    start: date | None = None,
    end: date | None = None,
) -> tuple[str, list[Any]]:
    """SQL (and its parameters) of a query with the rollups' columns, the downloads of
    ``project`` (a normalised name; or those ``among`` a list of them; or every project)
    per day from ``start`` to ``end`` inclusive (open-ended when None) for ``dimensions``
    ('' the total): from ``download_rollups``, but the open days of the named dimensions
    from the rows (see the module doc). A key may have several rows: sum them. Every reader
    of the rollups goes through this; put it first in a statement (``WITH daily AS (...)``)
    so its parameters come first.
    """
    settled = settled_through(con)
    named = [name for name in dimensions if name]
    conditions = ["list_contains(?, dimension)"]
    params: list[Any] = [list(dimensions)]
    # Totals are rolled up for every day, the rest for settled days only.
    conditions.append("(dimension = '' OR day <= ?)")
    params.append(settled)
    if start is not None:
        conditions.append("day >= ?")
        params.append(start)
    if end is not None:
        conditions.append("day <= ?")
        params.append(end)
    if project is not None:
        conditions.append("project = ?")
        params.append(project)
    elif among is not None:
        conditions.append("list_contains(?, project)")
        params.append(list(among))
    parts = [f"SELECT {KEY}, downloads FROM {ROLLUPS} WHERE {' AND '.join(conditions)}"]
    first = settled + timedelta(days=1) if settled is not None else start
    if start is not None and first is not None:
        first = max(first, start)
    if named and (end is None or first is None or first <= end):
        # Bounds on "timestamp" itself, so DuckDB skips row groups by their min/max.
        conditions = []
        if first is not None:
            conditions.append('"timestamp" >= ?')
            params.append(first)
        if end is not None:
            conditions.append('"timestamp" < ?')
            params.append(end + timedelta(days=1))
        # The stored spellings of the names: an IN list keeps DuckDB's filter pushdown.
        if project is not None:
            conditions.append(f"project IN (SELECT name FROM {PROJECTS} WHERE normalized = ?)")
            params.append(project)
        elif among is not None:
            conditions.append(
                f"project IN (SELECT name FROM {PROJECTS} WHERE list_contains(?, normalized))"
            )
            params.append(list(among))
        where = " AND ".join(conditions) or "true"
        parts.append(breakdowns_sql(where, named))
    return " UNION ALL ".join(parts), params


def first_new_rowid(con: duckdb.DuckDBPyConnection) -> int:
    """The rowid the next appended row of ``file_downloads`` will have at least."""
    found = con.execute("SELECT max(rowid) FROM file_downloads").fetchone()
    return 0 if found is None or found[0] is None else int(found[0]) + 1


def add_new_rows(con: duckdb.DuckDBPyConnection, first_rowid: int) -> None:
    """For the rows appended since ``first_rowid``: record new project spellings, append
    their totals, and the aggregate of those for settled days; then settle the days their
    latest day settles (see the module doc)."""
    where = f"rowid >= {int(first_rowid)}"
    _add_names(con, where)
    found = con.execute(
        f'SELECT CAST(min("timestamp") AS DATE), CAST(max("timestamp") AS DATE) '
        f"FROM file_downloads WHERE {where}"
    ).fetchone()
    if found is None or found[0] is None:
        return
    earliest, latest = found
    totals = aggregate_sql(where, one_row_per_key=False, dimensions=[""])
    con.execute(f"INSERT INTO {ROLLUPS} {totals}")
    settled = settled_through(con)
    if settled is not None and earliest <= settled:
        late = f"{where} AND \"timestamp\" < DATE '{settled + timedelta(days=1)}'"
        con.execute(f"INSERT INTO {ROLLUPS} {aggregate_sql(late, dimensions=list(DIMENSIONS))}")
    through = latest - timedelta(days=OPEN_DAYS)
    if settled is None or settled < through:
        settle(con, settled, through)


def settle(con: duckdb.DuckDBPyConnection, after: date | None, through: date) -> None:
    """Roll up the days after ``after`` (from the first when None) through ``through`` from
    their rows, in place of the totals their loads appended, sorted by project and day, and
    record ``through`` as settled."""
    rows = f"\"timestamp\" < DATE '{through + timedelta(days=1)}'"
    days = f"day <= DATE '{through}'"
    if after is not None:
        rows += f" AND \"timestamp\" >= DATE '{after + timedelta(days=1)}'"
        days += f" AND day > DATE '{after}'"
    con.execute(f"DELETE FROM {ROLLUPS} WHERE dimension = '' AND {days}")
    con.execute(f"INSERT INTO {ROLLUPS} {aggregate_sql(rows)} ORDER BY project, day")
    con.execute(f"UPDATE {VERSION} SET compacted_through = ?", [through])


def _add_names(con: duckdb.DuckDBPyConnection, where: str) -> None:
    con.execute(
        f"INSERT OR IGNORE INTO {PROJECTS} SELECT project, {NORMALIZED} "
        f"FROM (SELECT DISTINCT project FROM file_downloads WHERE {where})"
    )


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute rollups and names from every row (inside the caller's transaction): the
    days up to :data:`OPEN_DAYS` before the latest are settled, the rest open (totals
    only)."""
    con.execute(f"DELETE FROM {ROLLUPS}")
    con.execute(f"DELETE FROM {PROJECTS}")
    con.execute(f"UPDATE {VERSION} SET definition = ?, compacted_through = NULL", [DEFINITION])
    _add_names(con, "true")
    latest = con.execute('SELECT CAST(max("timestamp") AS DATE) FROM file_downloads').fetchone()
    if latest is not None and latest[0] is not None:
        through = latest[0] - timedelta(days=OPEN_DAYS)
        settle(con, None, through)
        open_days = f"\"timestamp\" >= DATE '{through + timedelta(days=1)}'"
        con.execute(f"INSERT INTO {ROLLUPS} {aggregate_sql(open_days, dimensions=[''])}")
    bump(con)


def bump(con: duckdb.DuckDBPyConnection) -> None:
    """A new data version: caches and ETags keyed on the old one are stale after commit."""
    con.execute(f"UPDATE {VERSION} SET version = version + 1, published_at = now()")
