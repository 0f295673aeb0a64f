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
stats web's ETags and caches follow it) with the time of the latest. ``warehouse_changes``
says, per version, what its load changed: the earliest day whose downloads it touched (NULL:
none; ``0001-01-01`` after a rebuild: every day) and whether it added uploads (the latest
releases), written by :func:`bump` in the load's transaction, so a version and its row are
committed together or not at all. The stats web keeps a cached answer across versions that
touched no day it read (a daytime publish adds today's rows; yesterday's answers stand).
``warehouse_late`` narrows that for a load whose downloads reach days before its newest
one (a late batch: in production every publish in the first hours of a day carries some of
yesterday's): its row names the projects of those earlier days (PEP 503 names) and the
newest day, when they are at most :data:`LATE_PROJECTS`. That version touched those
projects from ``first_day`` on and every project from ``newest_day`` on, so the other
projects' answers over complete days stand. A version without its row (a load of one day,
more late projects than the bound, a rebuild, uploads, an older release's load) touched
every project from ``first_day`` on. A table of its own rather than columns of
``warehouse_changes``: an older release's load inserts a row of three values there, which a
wider table refuses.

**Breakdowns are rolled up in batches behind a rowid mark, and compacted once a day
settles.** The latest day loaded and the :data:`OPEN_DAYS` ``- 1`` before it are *open*:
batches for them still arrive. ``warehouse_version`` holds two marks: ``compacted_through``,
the last settled day, and ``tail_from``, a rowid of ``file_downloads``. ``download_rollups``
holds the totals (``dimension`` ``''``) of the rows (but the totals tail's, below) and
the breakdowns (the
:data:`DIMENSIONS`) of every row of the settled days; ``download_rollups_open`` holds the
breakdowns of the open days' rows below ``tail_from``, apart, so totals questions (the
most asked) never read them; the open days' rows from ``tail_from`` on are the *tail*.
Readers go through :func:`daily`, which adds the tail's breakdowns aggregated from the rows
on the fly (at most about :data:`TAIL_ROWS` rows, in the table's last row groups, which
DuckDB finds by rowid and skips the rest; and only the projects and dimensions asked for).
**Totals too wait behind a rowid mark**, ``totals_from``: ``download_rollups`` holds the
totals of the rows below it; the rows from it on are the *totals tail*, at most about
:data:`TOTALS_TAIL_ROWS`, and ``totals_first`` and ``totals_last`` say the first and last
day of its downloads (NULL: none). :func:`daily` adds the tail's totals from the rows when
those days meet the days asked about. So:

- a small load appends no rollup row: its statement (:func:`insert_sql`) returns its rows'
  count, days and spellings, and the marks move in the version's ``UPDATE`` (:func:`bump`)
  that every load runs. Unless the tail then holds :data:`TOTALS_TAIL_ROWS` rows or more:
  then the load appends the totals of the tail, its own rows included (one ``GROUP BY``,
  about 0.1 rollup rows per download; :func:`roll_totals`), and moves ``totals_from`` past
  its rows; or its days are all after the tail's (a day's first publish, most often): then
  it appends the tail's totals before its own rows, which begin the tail; or its days
  reach outside the tail's otherwise (across midnight, a late batch): then it appends the
  totals of the tail and its own rows. So the tail holds the latest day's rows, and the
  questions that end yesterday (``recent``, ``overall``) read it only between midnight
  and the first publish of the new day;
- a large load (past :data:`ONE_STATEMENT_BYTES`) appends its totals at once, read back,
  and the tail's before them: the tail is a range of rowids, so it ends where they begin;
- a load appends, for rows of days settled already (late batches), their breakdowns; a
  key may so have several rows, and every reader sums them;
- a load after which the tail holds :data:`TAIL_ROWS` rows or more appends the tail's
  breakdowns to ``download_rollups_open`` (a row per grouping, not summed per key) and
  moves ``tail_from`` past its own rows;
- a load that brings downloads of a day that settles further days adds those days'
  breakdowns from their rows in the tail to theirs in ``download_rollups_open`` (which
  drops them), and rewrites each of their keys as one row of ``download_rollups``, sorted
  by project (so a project's rollups sit in few row groups, and DuckDB skips the rest); then
  ``compacted_through`` moves on. Once a load whose settle completes a week or a month
  that earlier settles began has committed, that period's days are rewritten as one run
  sorted by project (:func:`regroup`, in transactions of their own), so a project's
  rollups stay in a few row groups however many days have settled one by one.

So each row is aggregated by dimension once (in a tail batch, or at settling), and a
reader of the open days aggregates a bounded number of rows however many a day brings (at
3.9M rows a day, two open days of rows made a project page take up to a second).

All of it happens in the load's transaction (:class:`~.duck.DuckDBWarehouse`), so rows,
rollups and both marks are all old or all new after a kill at any point. A reader's
statement reads the marks itself, so rollups and tail come from one snapshot. The rows a
load just inserted are the ones with a ``rowid`` at or above the table's next one before
the insert (inside the transaction DuckDB gives them provisional rowids above every
committed one; at commit they take the next ones in order, as the table only ever appends,
which is where ``tail_from`` then points). Each load stores that next rowid with its
version (``next_rowid``), so the next load need not find it in the rows (:func:`marks`).

Why: each load used to append the aggregate of its rows in every dimension (about 1.3
rollup rows per download, as a load spreads over thousands of projects), which cost a load
a quarter of its time (BENCHMARKS.md); aggregating a few hundred thousand rows at once, a
row per grouping and summed per key only when the day settles, costs a fraction of that.
Totals were appended per load, because most questions (the API's ``recent`` and
``overall``, badges, top projects, ``stats --days``) ask only for them, and reading the open
days' rows for every question made those answers ten times slower; but that cost a
5,700-row load (hourly at 50M rows a year) about 5.6 ms of its 60-90, where rolling up
the tail costs it about 2.9 (BENCHMARKS.md, "totals behind a mark"). The totals
tail keeps what they read bounded (:data:`TOTALS_TAIL_ROWS` rows), and most of the time
out of the days they ask about.

:func:`rebuild` recomputes everything from the rows, the settled days sorted by project and
day, the open days whole (the tail empty). It runs on
``linehaul rollup --rebuild`` and, by itself, when a warehouse opened for loading has a
rollup definition other than :data:`DEFINITION` (an older release, or a changed mirror
list), so rollups never describe rows by rules the code no longer has.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import duckdb

from pythonhosted.warehouse import spellings, suggestions
from pythonhosted.warehouse.mirrors import MIRRORS, mirror_sql

ROLLUPS = "download_rollups"
OPEN_BREAKDOWNS = "download_rollups_open"
PROJECTS = "project_names"
VERSION = "warehouse_version"
CHANGES = "warehouse_changes"
LATE = "warehouse_late"
EVERY_DAY = date.min
"""A change's ``first_day`` when every day may have changed (a rebuild)."""
NORMALIZED = (
    "CASE WHEN contains(project, '_') OR contains(project, '.') OR contains(project, '--') "
    "THEN lower(regexp_replace(project, '[-_.]+', '-', 'g')) ELSE lower(project) END"
)
"""SQL: PEP 503's name of ``project`` (runs of -, _ and . become one -, lower case). A name
without _, . or -- has no run to replace, so it is only lowered: the regular expression cost
a load 0.45 us a group (1.4 ms of a 5,700-row load's 3,000 totals), ``lower`` a tenth."""
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
    f"7;totals-behind-mark;open-breakdowns-apart;dimensions={','.join(DIMENSIONS)};mirrors={','.join(MIRRORS)};"
    f"counted={COUNTED}"
)

_COLUMNS = (
    "(day DATE NOT NULL, project VARCHAR NOT NULL, dimension VARCHAR NOT NULL, value VARCHAR, "
    "mirror BOOLEAN NOT NULL, ci BOOLEAN, downloads BIGINT NOT NULL)"
)
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {ROLLUPS} {_COLUMNS}",
    f"CREATE TABLE IF NOT EXISTS {OPEN_BREAKDOWNS} {_COLUMNS}",
    f"CREATE TABLE IF NOT EXISTS {PROJECTS} (name VARCHAR PRIMARY KEY, "
    "normalized VARCHAR NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {PROJECTS}_normalized ON {PROJECTS} (normalized)",
    f"CREATE TABLE IF NOT EXISTS {VERSION} (version BIGINT NOT NULL, "
    "published_at TIMESTAMP, definition VARCHAR NOT NULL, compacted_through DATE)",
    f"CREATE TABLE IF NOT EXISTS {CHANGES} (version BIGINT PRIMARY KEY, first_day DATE, "
    "uploads BOOLEAN NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {LATE} (version BIGINT PRIMARY KEY, newest_day DATE NOT NULL, "
    "projects VARCHAR[] NOT NULL)",
)
OPEN_DAYS = 2  # the latest day loaded and the one before stay open for late batches
REGROUP_ROWS = 200_000
"""Rollup rows :func:`regroup` rewrites per transaction: fits a 128 MB ``duckdb.memory_limit``
(500,000 did not)."""
TAIL_ROWS = 250_000
"""Rows in the tail (appended since ``tail_from``) at which a load rolls up the open days'
breakdowns: a reader aggregates at most about this many rows (and a load a few more)."""
TOTALS_TAIL_ROWS = 25_000
"""Rows in the totals tail (appended since ``totals_from``) at which a load rolls up their
totals: a reader of totals whose days meet the tail's aggregates at most about this many
rows (and a load a few more). Why this size: the roll costs a load the same per row at any
size (about 0.5 us, 2.9 ms a 5,700-row load), so the bound is a reader's cost, which is
mostly fixed: 5-6 ms more a question at 22,800 rows (BENCHMARKS.md, "totals behind a
mark"); an earlier probe had 4-6 ms a question without, 7-9 ms with 25,000 rows, 8.5-10 ms
with 250,000. 25,000 rows are four or five hourly loads at 137k rows a day (50M a year)."""
LATE_PROJECTS = 1_000
"""Projects a load's late part (downloads of days before its newest) may name in
``warehouse_late``; past it, the load touched every project, as one of unknown late part.
Why this many: a record stays some 20 KB, and the stats web holds at most about 25 MiB of
them at 8 such publishes a day over its 10,000 kept versions (BENCHMARKS.md, "A late batch
and the projects it touched"); a late batch past it changes nothing from before."""
ALL = ("", *DIMENSIONS)  # the total and each dimension
KEY = "day, project, dimension, value, mirror, ci"


def aggregate_sql(
    where: str,
    *,
    one_row_per_key: bool = True,
    dimensions: Sequence[str] = ALL,
    source: str = "file_downloads",
) -> str:
    """Rollup rows for the ``file_downloads`` rows matching ``where`` (read from ``source``,
    which has their columns), of ``dimensions`` ('' the total).

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
        f"FROM {source} WHERE ({where}) AND {COUNTED}) "
        # The totals alone: a plain GROUP BY, a tenth cheaper than one grouping set.
        + (f"GROUP BY {base}" if not named else f"GROUP BY GROUPING SETS ({', '.join(sets)})")
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
    suggestions.ensure(con, PROJECTS)
    for column in (
        "compacted_through DATE",
        "tail_from BIGINT",
        "next_rowid BIGINT",
        "totals_from BIGINT",
        "totals_first DATE",
        "totals_last DATE",
        "totals_version BIGINT",
    ):
        con.execute(f"ALTER TABLE {VERSION} ADD COLUMN IF NOT EXISTS {column}")
    found = con.execute(f"SELECT definition FROM {VERSION}").fetchone()
    if found is None:
        con.execute(
            f"INSERT INTO {VERSION} (version, published_at, definition, compacted_through, "
            "tail_from, totals_from, totals_version) VALUES (0, NULL, ?, NULL, 0, 0, 0)",
            [DEFINITION],
        )
        con.execute(f"DELETE FROM {CHANGES}")  # versions count from 0 again
        con.execute(f"DELETE FROM {LATE}")
        has_rows = con.execute("SELECT 1 FROM file_downloads LIMIT 1").fetchone() is not None
        return has_rows
    return bool(found[0] != DEFINITION)


@dataclass(frozen=True)
class Marks:
    """Where the rollups stand: ``settled`` (``compacted_through``, None before any day
    settled), ``tail_from`` (the open days' rows below it have their breakdowns rolled
    up), ``totals_from`` (the rows below it have their totals rolled up) and ``totals_days``
    (the first and last day of the downloads from ``totals_from`` on, None: none); and,
    for a writer, ``next_rowid``, the rowid the next appended row will have at least, and
    ``names``, the spellings ``project_names`` holds."""

    settled: date | None
    tail_from: int
    next_rowid: int = 0
    names: int = 0
    totals_from: int = 0
    totals_days: tuple[date, date] | None = None


def settled_through(con: duckdb.DuckDBPyConnection) -> date | None:
    """The last day the rollups hold (``compacted_through``); None when none settled yet,
    or the warehouse predates the column."""
    return _stored_marks(con)[0].settled


def _stored_marks(con: duckdb.DuckDBPyConnection) -> tuple[Marks, bool]:
    """The marks as stored, and whether the warehouse has the tail mark. One from an older
    release (until its next publish rebuilds the rollups) has none: its rollups hold no
    open day's breakdowns, so its tail is every row of the open days (from rowid 0). Its
    rollups hold every row's totals, so its totals tail is empty (``totals_days`` None), as
    it is when the totals marks were not written with the current version (an older
    release's publish or rebuild since, which appended every load's totals)."""
    cursor = con.execute(f"SELECT * FROM {VERSION}")
    row = cursor.fetchone()
    if row is None:
        return Marks(None, 0), True
    stored = dict(zip([column[0] for column in cursor.description or ()], row, strict=True))
    current = "tail_from" in stored
    ours = stored.get("totals_version") == stored.get("version")
    return Marks(
        stored.get("compacted_through"),
        int(stored.get("tail_from") or 0),
        totals_from=int(stored.get("totals_from") or 0),
        totals_days=_days(stored.get("totals_first"), stored.get("totals_last")) if ours else None,
    ), current


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
    ('' the total): from ``download_rollups``, plus the named dimensions of the open days'
    rows in the tail and the totals of the rows in the totals tail (see the module doc). A
    key may have several rows: sum them. Every reader of the rollups goes through this; put
    it first in a statement (``WITH daily AS (...)``) so its parameters come first.

    The tail is the rows at or above ``tail_from`` of the days after ``compacted_through``,
    both read by the statement itself, so rollups and tail come from one snapshot even if a
    load commits meanwhile. The same bounds as read here go in as constants too, so DuckDB
    skips row groups by their min/max: both marks only move forward, so those constants
    select a superset of the tail. The totals tail is read the same way (``totals_from``
    read by the statement), and left out when its day, as read here, is not among the days
    asked about (the common case: ``recent`` and ``overall`` end yesterday, a publish
    brings today): a load that commits meanwhile either rolled the totals tail up (then the
    statement reads the rollups it made) or added downloads of that one day only, so the
    answer is that of the snapshot read here or a later one.
    """
    marks, current = _stored_marks(con)
    named = [name for name in dimensions if name]
    conditions = ["list_contains(?, dimension)"]
    params: list[Any] = [list(dimensions)]
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
    where = " AND ".join(conditions)
    parts = [f"SELECT {KEY}, downloads FROM {ROLLUPS} WHERE {where}"]
    if named and current:  # the open days' breakdowns below the mark: never read for totals
        parts.append(f"SELECT {KEY}, downloads FROM {OPEN_BREAKDOWNS} WHERE {where}")
        params += params[:]
    first = marks.settled + timedelta(days=1) if marks.settled is not None else start
    if start is not None and first is not None:
        first = max(first, start)
    if named and (end is None or first is None or first <= end):
        conditions = ["rowid >= ?"]
        params.append(marks.tail_from)
        if current:
            conditions.append(f"rowid >= (SELECT coalesce(tail_from, 0) FROM {VERSION})")
            conditions.append(
                "\"timestamp\" >= (SELECT coalesce(compacted_through + 1, DATE '0001-01-01') "
                f"FROM {VERSION})"
            )
        conditions += _rows_of(first, end, project, among, params)
        parts.append(breakdowns_sql(" AND ".join(conditions), named))
    days = marks.totals_days
    if "" in dimensions and days is not None and _overlap(days, start, end):
        conditions = [
            "rowid >= ?",
            f"rowid >= (SELECT coalesce(totals_from, 0) FROM {VERSION})",
        ]
        params.append(marks.totals_from)
        conditions += _rows_of(start, end, project, among, params)
        totals = aggregate_sql(" AND ".join(conditions), one_row_per_key=False, dimensions=[""])
        parts.append(f"SELECT {KEY}, downloads FROM ({totals})")
    return " UNION ALL ".join(parts), params


def _overlap(days: tuple[date, date], start: date | None, end: date | None) -> bool:
    """Whether ``days`` (first, last) and ``start`` to ``end`` (open-ended at None) meet."""
    return (end is None or days[0] <= end) and (start is None or start <= days[1])


def _rows_of(
    start: date | None,
    end: date | None,
    project: str | None,
    among: Sequence[str] | None,
    params: list[Any],
) -> list[str]:
    """Conditions on ``file_downloads`` rows for :func:`daily`'s days and projects (their
    parameters appended to ``params``)."""
    conditions = []
    if start is not None:
        conditions.append('"timestamp" >= ?')
        params.append(start)
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
    return conditions


def _days(first: date | None, last: date | None) -> tuple[date, date] | None:
    return None if first is None or last is None else (first, last)


def marks(con: duckdb.DuckDBPyConnection) -> Marks:
    """The marks, for a writer about to append rows: one statement, from the table's
    metadata and ``warehouse_version``. The count of stored spellings picks how new ones
    are found.

    The next rowid is the one each load stores (``next_rowid``, by :func:`bump`), taken
    when it equals ``count(*)``: the table only appends, so its rowids are then 0 to
    ``count(*) - 1``. Otherwise (none stored yet, or rows appended by a release that does
    not store it) it is found in the rows: one past the highest, among the rows from
    ``count(*) - 1`` on (the highest rowid is at least that, so this is exact; DuckDB then
    reads only the last row group, where ``max(rowid)`` over the table reads every rowid:
    30 ms at 50M rows). That read was a third of this statement's CPU, which a small load
    pays each time (BENCHMARKS.md)."""
    found = con.execute(
        "SELECT next_rowid, (SELECT count(*) FROM file_downloads), compacted_through, "
        f"tail_from, (SELECT count(*) FROM {PROJECTS}), totals_from, totals_first, totals_last "
        f"FROM {VERSION}"
    ).fetchone()
    assert found is not None, "ensure() made the row"
    stored, rows, settled, tail_from, names, totals_from, *totals_days = found
    if stored != rows:
        exact = con.execute(
            "SELECT coalesce(max(rowid) + 1, 0) FROM file_downloads WHERE rowid >= ?",
            [rows - 1],
        ).fetchone()
        assert exact is not None, "an aggregate without GROUP BY returns a row"
        stored = exact[0]
    return Marks(
        settled,
        int(tail_from or 0),
        int(stored),
        int(names),
        int(totals_from or 0),
        _days(*totals_days),
    )


ONE_STATEMENT_BYTES = 16 << 20
"""NDJSON a load may hold (about 35,000 rows) to be inserted with its totals in one
statement (:func:`insert_sql`). Rows an ``INSERT ... RETURNING`` inserts are written at
``COMMIT``, serially, where a plain parallel ``INSERT`` writes full row groups (122,880 rows)
as it goes: a 162,000-row load's COMMIT took 240 ms instead of 2 ms. Below a row group a
plain ``INSERT`` leaves its rows to the COMMIT too, so there one statement costs nothing."""


@dataclass(frozen=True)
class Inserted:
    """What a load's statement (:func:`insert_sql`) says of the rows it inserted."""

    rows: int
    days: tuple[date, date] | None  # the earliest and latest day of a download among them
    spellings: list[str]  # their spellings not stored yet, or all (see insert_sql)
    totals: bool = True  # whether their totals were appended (read back), or wait in the tail
    # the PEP 503 names of their downloads on days before the latest (None: past the bound),
    # if ``named`` (read with their totals); else read when needed (late_projects)
    late: list[str] | None = None
    named: bool = False


def insert_sql(insert: str, before: Marks) -> str:
    """``insert`` (``INSERT INTO file_downloads SELECT ...``, no ``RETURNING``) as one
    statement that returns, as one row, :class:`Inserted`'s fields: the rows inserted, the
    first and last day of a download among them, and their distinct spellings
    (:func:`_spellings_sql`). For loads up to :data:`ONE_STATEMENT_BYTES`; their totals
    wait in the totals tail (:func:`add_new_rows`).

    Why one statement: the days and the spellings are read from the rows as the insert
    returns them, not from the table afterwards (a scan of the new rows each), and each
    DuckDB statement costs 0.3-0.5 ms however small. The insert returns only what is read
    (:data:`RETURNED`): its day, spelling and whether it counts; the totals' key (mirror,
    CI, the name normalised) and the totals' ``INSERT`` cost a 5,700-row load 3.4 ms more
    (BENCHMARKS.md, "totals behind a mark"), where rolling up the tail costs it about 2.4.
    The returned rows are grouped once, and the count, the days and the spellings read the
    groups, not the rows thrice.
    """
    return (
        f"WITH new_rows AS ({insert} RETURNING {RETURNED}), "
        "groups AS (SELECT day, project, counted, count(*) AS rows FROM new_rows "
        "GROUP BY day, project, counted) "
        "SELECT coalesce(sum(rows), 0), min(day) FILTER (counted), max(day) FILTER (counted), "
        f"({_spellings_sql('groups', 'true', before)}) FROM groups"
    )


def late_projects(con: duckdb.DuckDBPyConnection, where: str, newest: date) -> list[str] | None:
    """The PEP 503 names of the downloads among the rows matching ``where`` (a load's) on
    days before ``newest``, sorted; None when more than :data:`LATE_PROJECTS`.

    A statement of its own, run only for a load of several days (a late batch), over its
    rows (by rowid: DuckDB reads only theirs): in the insert's statement, as one more
    subquery over its grouped rows, it cost every load 0.2-1.4 ms, of which loads of one
    day, most of them, needed nothing (BENCHMARKS.md)."""
    found = con.execute(
        f"SELECT list(name) FROM (SELECT DISTINCT {NORMALIZED} AS name FROM (SELECT DISTINCT "
        f'project FROM file_downloads WHERE ({where}) AND {COUNTED} AND "timestamp" < ?) '
        f"LIMIT {int(LATE_PROJECTS) + 1})",
        [newest],
    ).fetchone()
    assert found is not None, "an aggregate without GROUP BY returns a row"
    return _bounded(found[0] or [])


RETURNED = f'CAST("timestamp" AS DATE) AS day, project, {COUNTED} AS counted'
"""What :func:`insert_sql`'s insert returns of each row: its day, its spelling and whether
it counts (as :func:`aggregate_sql` reads them)."""


def _spellings_sql(source: str, where: str, before: Marks) -> str:
    """The distinct spellings of the rows of ``source`` matching ``where``, as one list:
    only those ``project_names`` lacks when it holds fewer than
    :data:`~.spellings.JOINED_BELOW` (one anti-join), else every one (for
    :func:`~.spellings.record` to probe)."""
    sql = f"SELECT list(DISTINCT project ORDER BY project) FROM {source} WHERE ({where})"
    if before.names < spellings.JOINED_BELOW:
        sql += f" AND project NOT IN (SELECT name FROM {PROJECTS})"
    return sql


def inserted(row: tuple[Any, ...] | None) -> Inserted:
    """:class:`Inserted` from the row :func:`insert_sql` returns."""
    assert row is not None, "an aggregate without GROUP BY returns a row"
    rows, first, last, names = row
    days = (first, last) if first is not None else None
    return Inserted(int(rows), days, list(names or []), totals=False)


def _bounded(names: Sequence[str]) -> list[str] | None:
    """``names`` sorted, or None when more than :data:`LATE_PROJECTS`."""
    return sorted(names) if len(names) <= LATE_PROJECTS else None


def _read_back(con: duckdb.DuckDBPyConnection, before: Marks, rows: int) -> Inserted:
    """For a load inserted by a plain ``INSERT`` (past :data:`ONE_STATEMENT_BYTES`): append
    its totals, read from the new rows in the table, and read their spellings, so the rest
    goes as after :func:`insert_sql`."""
    where = f"rowid >= {int(before.next_rowid)}"
    totals = aggregate_sql(where, one_row_per_key=False, dimensions=[""])
    keys = con.execute(f"INSERT INTO {ROLLUPS} {totals} RETURNING day, project").fetchall()
    found = con.execute(_spellings_sql("file_downloads", where, before)).fetchone()
    names = list(found[0] or []) if found is not None else []
    if not keys:
        return Inserted(rows, None, names)
    newest = max(day for day, _ in keys)
    late = _bounded(list({project for day, project in keys if day < newest}))
    return Inserted(rows, (min(day for day, _ in keys), newest), names, late=late, named=True)


@dataclass(frozen=True)
class Added:
    """What :func:`add_new_rows` did that its caller acts on: the weeks and months to
    :func:`regroup` once the load has committed; and, for :func:`bump`, the earliest day
    whose downloads the load brought (None: no download), the totals tail's marks
    (``totals_from``, ``totals_days``) after it, and its late part (``warehouse_late``'s row:
    None when it has none to record)."""

    periods: list[tuple[date, date]]
    first_day: date | None
    totals: tuple[int, tuple[date, date] | None] | None = None
    # the newest day of the new downloads and the projects of the days before it (bump's)
    late: tuple[date, list[str]] | None = None


def add_new_rows(
    con: duckdb.DuckDBPyConnection, before: Marks, rows: int, new: Inserted | None
) -> Added:
    """For the ``rows`` inserted since ``before`` was read, by :func:`insert_sql` (``new``,
    what it returned) or by a plain ``INSERT`` (``new`` None): record their new project
    spellings, and the breakdowns of those for settled days; roll up the totals tail when
    it has grown to :data:`TOTALS_TAIL_ROWS` (with the load's rows) or the load brings a
    day later than its last (without them), and a large load's totals at once; settle the
    days their latest download's day settles; roll up the tail when it has grown to
    :data:`TAIL_ROWS` (see the module doc).

    Only downloads have totals, so a day that brought rows but no download settles nothing
    yet; the next load with a download on a later day settles it.

    Returns the weeks and months the settled days completed (:func:`completed_periods`),
    for the caller to :func:`regroup` once the load has committed, and the earliest day of
    the new downloads.
    """
    periods: list[tuple[date, date]] = []
    if rows <= 0:
        return Added(periods, None)
    # In the transaction the new rows have provisional rowids (from 2**55 on); committed,
    # they take the next ones.
    next_rowid = before.next_rowid + rows  # once committed: the table only appends
    totals_from, totals_days = before.totals_from, before.totals_days
    if new is None:  # a large load: its totals are appended as its rows are read back
        new = _read_back(con, before, rows)
    if new.totals or next_rowid - totals_from >= TOTALS_TAIL_ROWS:
        # the tail before them, or with them, rolled up: the tail is a range of rowids
        roll_totals(con, totals_from, below=before.next_rowid if new.totals else None)
        totals_from, totals_days = next_rowid, None
    elif new.days is not None and totals_days is not None and new.days[0] > totals_days[1]:
        # a day's first publish: the tail before it rolled up, its rows begin the next
        roll_totals(con, totals_from, below=before.next_rowid)
        totals_from, totals_days = before.next_rowid, new.days
    elif new.days is not None and totals_days is not None and not _inside(new.days, totals_days):
        # across midnight, or a late batch: rolled up with the tail, which so keeps to the
        # latest day and does not stay among the days recent and overall read
        roll_totals(con, totals_from)
        totals_from, totals_days = next_rowid, None
    elif new.days is not None:
        totals_days = totals_days or new.days
    where = f"rowid >= {int(before.next_rowid)}"
    if before.names < spellings.JOINED_BELOW:
        names = spellings.add(con, PROJECTS, new.spellings)
    else:
        names = spellings.record(con, PROJECTS, new.spellings)
    suggestions.record(con, names)
    settled, tail_from = before.settled, before.tail_from
    if new.days is not None:
        earliest, latest = new.days
        if settled is not None and earliest <= settled:
            late = f"{where} AND \"timestamp\" < DATE '{settled + timedelta(days=1)}'"
            con.execute(f"INSERT INTO {ROLLUPS} {aggregate_sql(late, dimensions=list(DIMENSIONS))}")
        through = latest - timedelta(days=OPEN_DAYS)
        if settled is None or settled < through:
            settle(con, settled, through, tail_from)
            if settled is not None:
                periods = completed_periods(settled, through)
            settled = through
    if next_rowid - tail_from >= TAIL_ROWS:
        roll_tail(con, settled, tail_from, next_rowid)
        tail_from = next_rowid
    if (settled, tail_from) != (before.settled, before.tail_from):
        con.execute(
            f"UPDATE {VERSION} SET compacted_through = ?, tail_from = ?", [settled, tail_from]
        )
    named = None  # a late part to record: the newest day, and the projects before it
    if new.days is not None and new.days[0] < new.days[1]:
        projects = new.late if new.named else late_projects(con, where, new.days[1])
        named = (new.days[1], projects) if projects is not None else None
    return Added(
        periods, new.days[0] if new.days is not None else None, (totals_from, totals_days), named
    )


def _inside(days: tuple[date, date], bounds: tuple[date, date]) -> bool:
    """Whether ``days`` (first, last) lie within ``bounds`` (first, last)."""
    return bounds[0] <= days[0] and days[1] <= bounds[1]


def roll_totals(con: duckdb.DuckDBPyConnection, totals_from: int, below: int | None = None) -> None:
    """Append the totals of the rows from ``totals_from`` on (the totals tail and the load's
    rows), or only of those below ``below`` (the tail before the load), one row per
    grouping (readers sum a key's rows); the caller moves ``totals_from`` past them."""
    where = f"rowid >= {int(totals_from)}"
    if below is not None:
        if below <= totals_from:
            return
        where += f" AND rowid < {int(below)}"
    con.execute(
        f"INSERT INTO {ROLLUPS} {aggregate_sql(where, one_row_per_key=False, dimensions=[''])}"
    )


def roll_tail(
    con: duckdb.DuckDBPyConnection, settled: date | None, tail_from: int, next_rowid: int
) -> None:
    """Append the breakdowns of the open days' rows from ``tail_from`` on, this load's
    included (one row per grouping, not summed per key: that costs as much again, and
    settling the day sums them), sorted by project so that readers of one project skip
    most of the batch's row groups; the caller moves ``tail_from`` to ``next_rowid``, the
    rowid after this load's rows once committed."""
    where = f"rowid >= {int(tail_from)}"
    if settled is not None:
        where += f" AND \"timestamp\" >= DATE '{settled + timedelta(days=1)}'"
    rows = aggregate_sql(where, one_row_per_key=False, dimensions=list(DIMENSIONS))
    con.execute(f"INSERT INTO {OPEN_BREAKDOWNS} {rows} ORDER BY project, day")


def settle(
    con: duckdb.DuckDBPyConnection, after: date | None, through: date, tail_from: int
) -> None:
    """Settle the days after ``after`` (from the first when None) through ``through``: their
    rollups already hold the totals of every row and the breakdowns of the rows below
    ``tail_from``; add the breakdowns of their rows in the tail, and rewrite each key as one
    row, sorted by project and day, so a project's rollups sit in few row groups. The
    caller records ``through`` as settled."""
    rows = f"rowid >= {int(tail_from)} AND \"timestamp\" < DATE '{through + timedelta(days=1)}'"
    days = f"day <= DATE '{through}'"
    if after is not None:
        rows += f" AND \"timestamp\" >= DATE '{after + timedelta(days=1)}'"
        days += f" AND day > DATE '{after}'"
    tail = aggregate_sql(rows, one_row_per_key=False, dimensions=list(DIMENSIONS))
    _rewrite_sorted(
        con,
        f"SELECT {KEY}, downloads FROM {ROLLUPS} WHERE {days} "
        f"UNION ALL SELECT {KEY}, downloads FROM {OPEN_BREAKDOWNS} WHERE {days} "
        f"UNION ALL {tail}",
        days,
        emptied=(ROLLUPS, OPEN_BREAKDOWNS),
    )


def _rewrite_sorted(
    con: duckdb.DuckDBPyConnection,
    rows: str,
    where: str,
    params: Sequence[object] = (),
    emptied: Sequence[str] = (ROLLUPS,),
) -> None:
    """Replace what ``where`` selects in the ``emptied`` tables by ``rows`` (a ``SELECT`` of
    the key and downloads) summed per key, appended to the rollups as one run sorted by
    project and day: settling and regrouping both leave a project's rows of a period in one
    place. The sums are made before anything is deleted, since ``rows`` reads those tables."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE rewriting AS SELECT {KEY}, sum(downloads)::BIGINT "
        f"AS downloads FROM ({rows}) GROUP BY ALL",
        params,
    )
    for table in emptied:
        con.execute(f"DELETE FROM {table} WHERE {where}", params)
    con.execute(f"INSERT INTO {ROLLUPS} SELECT * FROM rewriting ORDER BY project, day")
    con.execute("DROP TABLE rewriting")


def completed_periods(after: date, through: date) -> list[tuple[date, date]]:
    """The weeks (Monday to Sunday, within a month) and then the months that settling the
    days after ``after`` through ``through`` completes, and that began on or before
    ``after``: their days were settled one settle at a time, so they lie in as many runs as
    settles.

    Why: each settle appends its days' keys sorted by project, so after a year of daily
    publishes a project's rollups sit in a row group of every day's run, and one project's
    all-time total read 365 row groups instead of two (BENCHMARKS.md: 166 against 3 ms at
    50M rows). Regrouping each completed week, then each completed month, as one run
    sorted by project leaves at most six day runs, four week runs and a run a month; each
    row is rewritten about twice more, a week's and a month's worth at a time."""
    days = [after + timedelta(days=n) for n in range(1, (through - after).days + 1)]
    # A month's last day is the day before a first; a Sunday ends a week.
    months = [(day.replace(day=1), day) for day in days if (day + timedelta(days=1)).day == 1]
    # A week that began in a month already regrouped keeps to its own month's days.
    weeks = [
        (max(day - timedelta(days=6), day.replace(day=1)), day)
        for day in days
        if day.weekday() == 6
    ]
    weeks = [w for w in weeks if not any(m[0] <= w[0] and w[1] <= m[1] for m in months)]
    return [(first, last) for first, last in [*weeks, *months] if first <= after]


def regroup(con: duckdb.DuckDBPyConnection, first: date, last: date) -> None:
    """Rewrite the settled rollups of ``first`` through ``last`` as one run sorted by project
    and day (a key's rows summed: late batches may have added some), outside any load's
    transaction: a range of projects of at most :data:`REGROUP_ROWS` rows per transaction.

    Each transaction rewrites its projects' rows of those days with the same sums, so a
    reader sees the same numbers before, during and after (the data version stays); a kill
    between two leaves the rest of the period as it was, still right, only in more runs. A
    month in one transaction needed memory in proportion to its rows (5.8M rollup rows at
    50M downloads a year: more than 256 MB, so a low ``duckdb.memory_limit`` would have
    failed every publish that completed a month); the ranges follow one another in project
    order, so the period still ends up one run sorted by project. Under a limit too low
    even for that, the caller logs it and the period stays as it was."""
    days = f"day >= DATE '{first}' AND day <= DATE '{last}'"
    counts = con.execute(
        f"SELECT project, count(*) FROM {ROLLUPS} WHERE {days} GROUP BY project ORDER BY project"
    ).fetchall()
    starts: list[str] = []
    held = REGROUP_ROWS
    for project, count in counts:
        if held + count > REGROUP_ROWS:
            starts.append(project)
            held = 0
        held += count
    for index, start in enumerate(starts):
        projects = "project >= ?"
        params = [start]
        if index + 1 < len(starts):
            projects += " AND project < ?"
            params.append(starts[index + 1])
        where = f"{days} AND {projects}"
        con.execute("BEGIN TRANSACTION")
        try:
            _rewrite_sorted(
                con, f"SELECT {KEY}, downloads FROM {ROLLUPS} WHERE {where}", where, params
            )
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # a failed COMMIT may have ended it
                con.execute("ROLLBACK")
            raise


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute rollups and names from every row (inside the caller's transaction): the
    days up to :data:`OPEN_DAYS` before the latest are settled, the rest rolled up whole
    (the tails empty)."""
    con.execute(f"DELETE FROM {ROLLUPS}")
    con.execute(f"DELETE FROM {OPEN_BREAKDOWNS}")
    con.execute(f"DELETE FROM {PROJECTS}")
    suggestions.clear(con)
    con.execute(
        f"UPDATE {VERSION} SET definition = ?, compacted_through = NULL, tail_from = 0",
        [DEFINITION],
    )
    found = con.execute("SELECT DISTINCT project FROM file_downloads ORDER BY project")
    suggestions.record(con, spellings.add(con, PROJECTS, [row[0] for row in found.fetchall()]))
    current = marks(con)
    latest = con.execute('SELECT CAST(max("timestamp") AS DATE) FROM file_downloads').fetchone()
    if latest is not None and latest[0] is not None:
        through = latest[0] - timedelta(days=OPEN_DAYS)
        open_days = f"\"timestamp\" >= DATE '{through + timedelta(days=1)}'"
        settled = f"\"timestamp\" < DATE '{through + timedelta(days=1)}'"
        con.execute(f"INSERT INTO {ROLLUPS} {aggregate_sql(settled)} ORDER BY project, day")
        con.execute(f"INSERT INTO {ROLLUPS} {aggregate_sql(open_days, dimensions=[''])}")
        breakdowns = aggregate_sql(open_days, dimensions=list(DIMENSIONS))
        con.execute(f"INSERT INTO {OPEN_BREAKDOWNS} {breakdowns} ORDER BY project, day")
        con.execute(
            f"UPDATE {VERSION} SET compacted_through = ?, tail_from = ?",
            [through, current.next_rowid],
        )
    bump(
        con,
        first_day=EVERY_DAY,
        uploads=False,
        next_rowid=current.next_rowid,
        totals=(current.next_rowid, None),
    )


def bump(
    con: duckdb.DuckDBPyConnection,
    *,
    first_day: date | None,
    uploads: bool,
    next_rowid: int | None = None,
    totals: tuple[int, tuple[date, date] | None] | None = None,
    late: tuple[date, list[str]] | None = None,
) -> None:
    """A new data version, and what it changed (in the caller's transaction): the earliest
    day whose downloads it touched (None: none; :data:`EVERY_DAY`: any) and whether it added
    uploads. A cached answer that read a day from ``first_day`` on, or a latest release when
    ``uploads``, is stale after commit; the others stand (their ETags too). With ``late``
    (the newest day of its downloads, and the projects of the days before it), only those
    projects' answers are stale from ``first_day`` on, every project's from that day on
    (``warehouse_late``; a statement of its own, which a load of one day never runs). A load into
    ``file_downloads`` gives the rowid its next row will have once committed, stored for
    :func:`marks` in the same statement, and the totals tail's marks after it (``totals``:
    ``totals_from`` and its first and last day), which so cost it no statement of their own;
    ``totals_version`` says they were written with this version (readers trust them only
    then: an older release's load bumps the version and appends its totals)."""
    stored = "" if next_rowid is None else f", next_rowid = {int(next_rowid)}"
    params: list[Any] = []
    if totals is not None:
        stored += (
            ", totals_from = ?, totals_first = ?, totals_last = ?, totals_version = version + 1"
        )
        params += [totals[0], *(totals[1] or (None, None))]
    else:  # the marks stand, and say so (a release without them leaves totals_version behind)
        stored += (
            ", totals_version = CASE WHEN totals_version = version THEN version + 1 "
            "ELSE totals_version END"
        )
    con.execute(f"UPDATE {VERSION} SET version = version + 1, published_at = now(){stored}", params)
    con.execute(f"INSERT INTO {CHANGES} SELECT version, ?, ? FROM {VERSION}", [first_day, uploads])
    if late is not None:
        con.execute(f"INSERT INTO {LATE} SELECT version, ?, ? FROM {VERSION}", list(late))
