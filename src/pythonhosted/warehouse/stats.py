"""Download statistics from the DuckDB warehouse: pypinfo-style breakdowns and top projects.

One function, :func:`breakdown`, answers both ``pythonhosted stats`` and the stats web, so
the two give the same numbers for the same question. A breakdown of one project (or of the
top projects) by time and at most one rolled-up field reads the daily rollups
(:mod:`.rollups`), O(days); any other is one ``GROUP BY`` over ``file_downloads``, O(rows).
Both count the same rows: the rollups hold the settled days, maintained in the loads'
transactions, and :func:`.rollups.daily` adds the open days from the rows; tests compare the
two. Date ranges are inclusive, UTC; percentages are of the range's total.
Field names follow pypinfo where it has one.

Mirrors (:mod:`.mirrors`) and CI downloads are counted or left out as asked. A download is a
row that sent the file's first byte (:data:`.rollups.COUNTED`: a 200, a 206 from byte 0, or a
reference row); ``with_bytes`` adds the body bytes every response of the group sent, ranges
that are not downloads included, and reads the rows.

``among`` narrows a breakdown to a set of projects (an author's, a maintainer's, an org's:
:mod:`.groups`); ``requires-python`` reads ``distribution_metadata`` (the downloaded file's
``Requires-Python``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
from packaging.utils import canonicalize_name

from pythonhosted.warehouse import suggestions
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.base import WarehouseError
from pythonhosted.warehouse.mirrors import mirror_sql
from pythonhosted.warehouse.rollups import COUNTED, DIMENSIONS, PROJECTS, PYTHON_MINOR, daily
from pythonhosted.warehouse.schema import TABLES

FIELDS: dict[str, str] = {
    "day": 'CAST("timestamp" AS DATE)',
    "week": "CAST(date_trunc('week', \"timestamp\") AS DATE)",
    "month": "strftime(\"timestamp\", '%Y-%m')",
    "project": "project",
    "version": "file.version",
    "file": "file.filename",
    "file-type": "file.type",
    "type": "file.type",
    "installer": "details.installer.name",
    "installer-version": "details.installer.version",
    "subcommand": "details.installer.subcommand",
    "python": PYTHON_MINOR,
    "python-minor": PYTHON_MINOR,
    "implementation": "details.implementation.name",
    "system": "details.system.name",
    "distro": "details.distro.name",
    "libc": "details.distro.libc.lib",
    "cpu": "details.cpu",
    "country": "country_code",
    "ci": "details.ci",
    "status": "response.status",
    "requires-python": "(SELECT requires_python FROM distribution_metadata AS m "
    "WHERE m.filename = file_downloads.file.filename)",
}
TIME_FIELDS = ("day", "week", "month")
# The days a question may name: ClickHouse's Date32 (the narrowest of the engines) starts at
# 1900-01-01, and both ends are far from Python's date.min and date.max, so the arithmetic on
# a range (30 days before its end, the day after it, a week's Monday) cannot overflow. An
# end of 9999-12-31 was a 500 from the stats web and a bare OverflowError from ``stats``.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2199, 12, 31)
# The same time fields over a rollup's ``day``.
_ROLLUP_TIME = {
    "day": "day",
    "week": "CAST(date_trunc('week', day) AS DATE)",
    "month": "strftime(day, '%Y-%m')",
}


def out_of_range(day: date) -> str | None:
    """Why a question cannot name ``day`` (None: it can)."""
    if FIRST_DAY <= day <= LAST_DAY:
        return None
    return f"{day} is not between {FIRST_DAY} and {LAST_DAY}"


class EmptyWarehouse(WarehouseError):
    """No warehouse file, or no downloads in it yet."""


class UnknownProject(WarehouseError):
    """No download of this project was ever recorded; ``close`` are names that were."""

    def __init__(self, name: str, close: list[str]) -> None:
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        super().__init__(f"no downloads were recorded for {name!r}{hint}")
        self.name = name
        self.close = close


@dataclass(frozen=True)
class Filters:
    """Which downloads count: mirrors' and CI's are left out unless asked for."""

    mirrors: bool = False
    ci: bool = True


@dataclass
class Breakdown:
    """Counts per combination of ``fields`` (sorted), and the total of the range."""

    fields: list[str]
    rows: list[tuple[Any, ...]]  # field values..., download_count[, bytes_sent]
    total: int
    start: date | None
    end: date
    total_bytes: int | None = None  # with bytes: every row's sum


def _order(fields: list[str]) -> str:
    """Time breakdowns read in time order; the rest by count, biggest first."""
    columns = [f"f{index}" for index in range(len(fields))]
    if fields and fields[0] in TIME_FIELDS:
        return ", ".join([*columns, "download_count DESC"])
    return ", ".join(["download_count DESC", *(f"{column} NULLS LAST" for column in columns)])


@contextmanager
def reader(path: Path, *, downloads: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse for reading; EmptyWarehouse when it is missing or (``downloads``)
    holds no downloads."""
    if not path.is_file():
        raise EmptyWarehouse(f"no warehouse at {path}")
    with reading(path) as con:
        if downloads and con.execute("SELECT 1 FROM file_downloads LIMIT 1").fetchone() is None:
            raise EmptyWarehouse(f"the warehouse at {path} holds no downloads yet")
        if downloads and (problem := outdated(con)) is not None:
            raise WarehouseError(f"the warehouse at {path} {problem}")
        yield con


def outdated(con: duckdb.DuckDBPyConnection) -> str | None:
    """What an older release's warehouse lacks that reading it needs, as the end of a sentence
    about it (None: nothing). Its next publish adds it (a writer brings every table up to
    the schema); until then queries would fail on a table or a column."""
    present: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
    ).fetchall():
        present.setdefault(table, set()).add(column)
    upgrade = "run 'pythonhosted linehaul rollup --rebuild' or let publish load once"
    for table in (PROJECTS, "distribution_metadata"):
        if table not in present:
            kind = "rollups" if table == PROJECTS else table
            return f"has no {kind} yet (made by an older release): {upgrade}"
    for table, fields in TABLES.items():
        missing = [field.name for field in fields if field.name not in present.get(table, ())]
        if missing:
            return f"has no {table}.{missing[0]} yet (made by an older release): {upgrade}"
    return None


def check_project(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """The normalised name of a project with recorded downloads, else UnknownProject."""
    normalized = canonicalize_name(name)
    known = con.execute(f"SELECT 1 FROM {PROJECTS} WHERE normalized = ? LIMIT 1", [normalized])
    if known.fetchone() is None:
        raise UnknownProject(name, close_names(con, normalized))
    return normalized


def close_names(con: duckdb.DuckDBPyConnection, normalized: str, limit: int = 3) -> list[str]:
    """Recorded project names that look like ``normalized`` (typos): found by index
    (:mod:`.suggestions`), or, in a warehouse not opened for loading by this release yet,
    by comparing it with every name."""
    try:
        return suggestions.close_names(con, normalized, limit)
    except duckdb.CatalogException:
        pass
    rows = con.execute(
        f"SELECT normalized, jaro_winkler_similarity(normalized, ?) AS score "
        f"FROM (SELECT DISTINCT normalized FROM {PROJECTS}) WHERE score >= ? "
        "ORDER BY score DESC, normalized LIMIT ?",
        [normalized, suggestions.CUTOFF, limit],
    ).fetchall()
    return [row[0] for row in rows]


PeriodRows = dict[str, list[tuple[date, Any, int]]]


@dataclass
class Breakdowns:
    """A project page's breakdowns, of a size that does not grow with the project's values
    (a project of 500,000 versions made every row of every period of every version a Python
    tuple: 2.6 s of CPU and +275 MB for one page)."""

    #: per dimension, (period start, value, downloads) of its ``leaders`` biggest values (of
    #: every value for '', the totals), by period then value
    periods: PeriodRows
    #: per dimension but '', its ``rows`` biggest values and their downloads, biggest first
    #: (equal downloads by value, None last)
    leading: dict[str, list[tuple[Any, int]]]
    #: per dimension but '' with more values than that: how many more, and their downloads
    others: dict[str, tuple[int, int]]


def ranked_periods(periods: str) -> str:
    """SQL (DuckDB's and ClickHouse's) of the rows of ``periods`` (a query of ``dimension,
    period, value, n``) with each value's ``total`` over every period and its ``rank`` among
    its dimension's values (1 the biggest; equal totals by value, NULL last)."""
    return (
        "SELECT *, dense_rank() OVER (PARTITION BY dimension ORDER BY total DESC, "
        "value ASC NULLS LAST) AS rank FROM (SELECT *, sum(n) OVER (PARTITION BY dimension, "
        f"value) AS total FROM ({periods}))"
    )


SYSTEMS = ("Windows", "Linux", "Darwin")
"""The systems a pypistats-shaped ``system`` breakdown names; the others are ``"other"``."""
SYSTEMS_SQL = ", ".join(f"'{name}'" for name in SYSTEMS)


def pypistats_categories(
    per_value: str, category: str, wanted: str | None, named: int | None
) -> str:
    """SQL (DuckDB's and ClickHouse's) of the ``day, category, category_downloads`` rows of a
    pypistats-shaped breakdown, folded in the warehouse so a worker holds the answer's rows,
    not every (day, value) of the range: ``per_value`` is a query of ``day, value,
    per_value`` (downloads per day and value), ``category`` the SQL of a value's category.
    With ``wanted`` (the SQL of a parameter), only the categories whose lowercase it is;
    else the ``named`` biggest categories over every day (equal totals by category) and the
    rest summed as one ``'other'`` a day (None: every category named)."""
    kept = "category"
    if named is not None:
        kept = f"CASE WHEN place <= {int(named)} THEN category ELSE 'other' END"
    chosen = f"WHERE lower(category) = {wanted} " if wanted is not None else ""
    categorised = (
        "SELECT day, category, sum(per_value) AS per_category FROM ("
        f"SELECT day, {category} AS category, per_value FROM ({per_value})) "
        f"{chosen}GROUP BY day, category"
    )
    return (
        f"SELECT day, {kept} AS named, sum(per_category) AS category_downloads FROM ("
        "SELECT *, dense_rank() OVER (ORDER BY category_total DESC, category) AS place FROM ("
        "SELECT *, sum(per_category) OVER (PARTITION BY category) AS category_total "
        f"FROM ({categorised}))) GROUP BY day, named"
    )


def gather_breakdowns(rows: Iterable[Sequence[Any]], dimensions: Sequence[str]) -> Breakdowns:
    """:class:`Breakdowns` of ``(part, dimension, period, value, downloads, count)`` rows, in
    order: part 0 the periods, 1 the leading values, 2 the others (``count`` of them)."""
    found = Breakdowns({name: [] for name in dimensions}, {n: [] for n in dimensions if n}, {})
    for part, dimension, period, value, downloads, count in rows:
        if part == 0:
            found.periods[dimension].append((period, value, int(downloads)))
        elif part == 1:
            found.leading[dimension].append((value, int(downloads)))
        else:
            found.others[dimension] = (int(count), int(downloads))
    return found


def rollup_dimension(fields: list[str]) -> str | None:
    """The rollup dimension that answers ``fields`` ('' for time alone), else None."""
    others = [name for name in fields if name not in TIME_FIELDS and name not in ("ci",)]
    if len(others) > 1 or len(set(fields)) != len(fields):
        return None
    if not others:
        return ""
    return others[0] if others[0] in DIMENSIONS else None


def breakdown(
    path: Path,
    project: str | None,
    fields: list[str],
    start: date | None,
    end: date,
    limit: int | None = None,
    filters: Filters = Filters(),
    *,
    among: list[str] | None = None,
    with_bytes: bool = False,
) -> Breakdown:
    """Downloads of ``project`` (every project when None, or those ``among`` a list of
    normalised names) from ``start`` to ``end`` inclusive (all time when ``start`` is None),
    counted per combination of ``fields``; ``with_bytes``: and the bytes sent.

    The project matches in its normalised form (PEP 503); UnknownProject when no download of
    it was ever recorded.
    """
    unknown = [name for name in fields if name not in FIELDS]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (choose from {', '.join(FIELDS)})")
    with reader(path) as con:
        normalized = check_project(con, project) if project is not None else None
        return query_breakdown(
            con, normalized, fields, start, end, limit, filters, among=among, with_bytes=with_bytes
        )


def query_breakdown(
    con: duckdb.DuckDBPyConnection,
    normalized: str | None,
    fields: list[str],
    start: date | None,
    end: date,
    limit: int | None = None,
    filters: Filters = Filters(),
    *,
    among: list[str] | None = None,
    with_bytes: bool = False,
) -> Breakdown:
    """:func:`breakdown` on an open connection, for a checked normalised project name."""
    grouped = [name for name in fields if name != "project"] if normalized is None else fields
    dimension = None if with_bytes else rollup_dimension(grouped)
    top = normalized is None and "project" in fields
    if dimension is not None and (normalized is not None or top or among is not None):
        sql, params = _rollup_sql(con, normalized, fields, dimension, start, end, filters, among)
    else:
        sql, params = _rows_sql(normalized, fields, start, end, filters, among, with_bytes)
    sums = "sum(download_count) OVER ()" + (", sum(bytes_sent) OVER ()" if with_bytes else "")
    extra = 2 if with_bytes else 1
    if fields:
        sql = f"SELECT *, {sums} FROM ({sql}) ORDER BY {_order(fields)}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        found = con.execute(sql, params).fetchall()
        total = int(found[0][-extra]) if found else 0
        total_bytes = int(found[0][-1] or 0) if found else 0
        rows = [row[:-extra] for row in found]
    else:
        found = con.execute(sql, params).fetchall()
        total = int(found[0][0] or 0)
        total_bytes = int(found[0][-1] or 0)
        rows = found if total or total_bytes else []
    if with_bytes:
        rows = [(*row[:-1], int(row[-1] or 0)) for row in rows]
    return Breakdown(fields, rows, total, start, end, total_bytes if with_bytes else None)


def _range(column: str, start: date | None, end: date, *, timestamp: bool) -> tuple[str, list[Any]]:
    if timestamp:
        after_end = end + timedelta(days=1)
        if start is None:
            return f"{column} < ?", [after_end]
        return f"{column} >= ? AND {column} < ?", [start, after_end]
    if start is None:
        return f"{column} <= ?", [end]
    return f"{column} BETWEEN ? AND ?", [start, end]


def _rollup_sql(
    con: duckdb.DuckDBPyConnection,
    normalized: str | None,
    fields: list[str],
    dimension: str,
    start: date | None,
    end: date,
    filters: Filters,
    among: list[str] | None,
) -> tuple[str, list[Any]]:
    source, params = daily(
        con, project=normalized, among=among, dimensions=[dimension], start=start, end=end
    )
    where, range_params = _range("day", start, end, timestamp=False)
    params += range_params
    where += " AND dimension = ?"
    params.append(dimension)
    if not filters.mirrors:
        where += " AND NOT mirror"
    if not filters.ci:
        where += " AND ci IS NOT TRUE"
    columns = {**_ROLLUP_TIME, "project": "project", "ci": "ci", dimension: "value"}
    selected = [f"{columns[name]} AS f{index}" for index, name in enumerate(fields)]
    group = "GROUP BY ALL" if fields else ""
    sql = (
        f"WITH daily AS ({source}) "
        f"SELECT {', '.join([*selected, 'sum(downloads)::BIGINT AS download_count'])} "
        f"FROM daily WHERE {where} {group}"
    )
    return sql, params


def _rows_sql(
    normalized: str | None,
    fields: list[str],
    start: date | None,
    end: date,
    filters: Filters,
    among: list[str] | None = None,
    with_bytes: bool = False,
) -> tuple[str, list[Any]]:
    where, params = _range('"timestamp"', start, end, timestamp=True)
    if normalized is not None:
        # The stored spellings of the name: an IN list keeps DuckDB's filter pushdown.
        where += f" AND project IN (SELECT name FROM {PROJECTS} WHERE normalized = ?)"
        params.append(normalized)
    elif among is not None:
        where += f" AND project IN (SELECT name FROM {PROJECTS} WHERE list_contains(?, normalized))"
        params.append(among)
    if not filters.mirrors:
        where += f" AND NOT {mirror_sql()}"
    if not filters.ci:
        where += " AND details.ci IS NOT TRUE"
    columns = {**FIELDS, "project": "lower(regexp_replace(project, '[-_.]+', '-', 'g'))"}
    selected = [f"{columns[name]} AS f{index}" for index, name in enumerate(fields)]
    if with_bytes:  # every response's bytes: the downloads counted among them
        counts = [
            f"count(*) FILTER (WHERE {COUNTED}) AS download_count",
            "sum(response.bytes_sent)::BIGINT AS bytes_sent",
        ]
    else:
        where += f" AND {COUNTED}"
        counts = ["count(*) AS download_count"]
    group = "GROUP BY ALL" if fields else ""
    sql = f"SELECT {', '.join([*selected, *counts])} FROM file_downloads WHERE {where} {group}"
    return sql, params
