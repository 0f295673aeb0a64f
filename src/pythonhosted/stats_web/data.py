"""The stats web's questions to the warehouse, answered from the daily rollups.

Each reads :func:`pythonhosted.warehouse.rollups.daily`: the settled days' rollups and the
open days aggregated from the rows, for the project and dimensions asked about.

Every function takes an open connection (:func:`pythonhosted.warehouse.access.reading`,
called in a worker thread) and returns plain data. Days are UTC; "the last complete day" is
yesterday, as ``pythonhosted stats --days`` and pypistats count it; the watermark says how
far the data is complete.

:class:`DataVersion` tells cheaply whether a publish changed the data: the DuckDB file and
its write-ahead log change on every commit, so their sizes and modification times are
compared on each request (two ``stat`` calls) and the version is read from the warehouse
only when they moved. With it, the changes of the versions since the last read
(:class:`~.changes.Changes`); and each question notes what it reads (:mod:`.changes`), so a
cached answer that read none of what a publish changed is kept. A question over every day
(a summary, an all-time total) is asked as its part up to the last complete day, kept
across such publishes (:mod:`.settled`), and the days after it; a page's breakdowns are a
settled part too.

A ClickHouse warehouse (``chdb://``, ``clickhouse://``) answers the same questions through
:mod:`pythonhosted.warehouse.clickhouse.stats` (``con`` is then its engine; the tests compare
the two engines' answers), and its data version (:class:`ClickHouseDataVersion`) is the count
of loads, read at most once a second.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from packaging.version import InvalidVersion
from packaging.version import Version as Release

from pythonhosted.stats_web import changes, settled
from pythonhosted.stats_web.changes import Changes
from pythonhosted.warehouse.clickhouse import stats as clickhouse
from pythonhosted.warehouse.clickhouse.engines import Engine
from pythonhosted.warehouse.rollups import PROJECTS, VERSION, daily
from pythonhosted.warehouse.stats import (
    SYSTEMS_SQL,
    Breakdown,
    Breakdowns,
    Filters,
    UnknownProject,
    check_project,
    gather_breakdowns,
    outdated,
    pypistats_categories,
    query_breakdown,
    ranked_periods,
)
from pythonhosted.warehouse.uploads import uploads

Connection = duckdb.DuckDBPyConnection | Engine  # DuckDB's, or a ClickHouse warehouse's
VERSION_TTL = 1.0  # seconds a ClickHouse warehouse's data version is taken as current


@dataclass(frozen=True)
class Today:
    """The UTC day the stats web counts as today: the clock's, or the day ``stats_web.today``
    pins for a warehouse that no longer grows (an archived copy, whose pages would otherwise
    show no recent downloads a month later; a test's, built for the day it was built on)."""

    pinned: date | None = None

    def now(self) -> datetime:
        """Now (naive UTC); on a pinned day, the clock's time of day on that day."""
        now = datetime.now(UTC).replace(tzinfo=None)
        return now if self.pinned is None else datetime.combine(self.pinned, now.time())

    def last_complete_day(self) -> date:
        return self.now().date() - timedelta(days=1)


@dataclass(frozen=True)
class Version:
    number: int  # loads that changed the data; 0 before any
    published_at: datetime | None  # naive UTC


class _SignedVersion:
    """A data version re-read only when a cheap signature of the warehouse changed."""

    def __init__(self) -> None:
        self.current = Version(-1, None)
        self._signature: tuple[int, ...] | None = None
        # what an older release's warehouse lacks (read with the version), else None
        self.outdated: str | None = None
        # what the versions changed: known on DuckDB only (ClickHouse records none)
        self.changes = Changes()

    def signature(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def signature_seen(self) -> tuple[int, ...] | None:
        """The signature when the version was last read."""
        return self._signature

    def stale(self) -> bool:
        return self.signature() != self._signature


class DataVersion(_SignedVersion):
    """The warehouse's data version, re-read only when its files changed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._wal = path.with_name(path.name + ".wal")
        self._lock = threading.Lock()

    def signature(self) -> tuple[int, ...]:
        parts: list[int] = []
        for file in (self.path, self._wal):
            try:
                info = os.stat(file)
            except FileNotFoundError:
                parts += [-1, -1]
            else:
                parts += [info.st_size, info.st_mtime_ns]
        return tuple(parts)

    def refresh(self, con: Connection, signature: tuple[int, ...]) -> Version:
        """Read the version (call with the signature taken before opening ``con``)."""
        assert isinstance(con, duckdb.DuckDBPyConnection)
        try:
            found = con.execute(f"SELECT version, published_at FROM {VERSION}").fetchone()
        except duckdb.CatalogException:
            found = None
        version = Version(int(found[0]), found[1]) if found else Version(0, None)
        self.changes.read(con, version.number)
        # An older release's warehouse holds downloads; a new one may not have every table
        # before its first load.
        held = con.execute("SELECT 1 FROM file_downloads LIMIT 1").fetchone() is not None
        problem = outdated(con) if held else None
        with self._lock:
            self.current = version
            self.outdated = problem
            self._signature = signature
        return version


class ClickHouseDataVersion(_SignedVersion):
    """:class:`DataVersion` of a ClickHouse warehouse: the count of loads (each booked in
    ``linehaul_loaded_files`` right after its rows), asked at most every
    :data:`VERSION_TTL` seconds, so a publish shows within a second."""

    def signature(self) -> tuple[int, ...]:
        return (int(time.monotonic() / VERSION_TTL),)

    def refresh(self, con: Connection, signature: tuple[int, ...]) -> Version:
        assert not isinstance(con, duckdb.DuckDBPyConnection)
        number, published_at = clickhouse.data_version(con)
        self.current = Version(number, published_at)
        self._signature = signature
        return self.current


def known(con: Connection, project: str) -> str:
    """The normalised name, or UnknownProject (with close names: an answer that shows them
    changes with the names any publish may add)."""
    try:
        if not isinstance(con, duckdb.DuckDBPyConnection):
            return clickhouse.check_project(con, project)
        return check_project(con, project)
    except UnknownProject:
        changes.volatile()
        raise


CATEGORY: dict[str, str] = {
    "value": "coalesce(value, 'null')",
    "major": "coalesce(split_part(value, '.', 1), 'null')",
    "system": f"CASE WHEN value IS NULL THEN 'null' WHEN value IN ({SYSTEMS_SQL}) THEN value "
    "ELSE 'other' END",
}
"""Per kind of pypistats category, the SQL of a rollup value's category (a missing value's
the string ``'null'``; a Python version's major is what precedes its first dot)."""


def categories(
    con: Connection,
    project: str,
    dimension: str,
    kind: str,
    start: date | None,
    end: date,
    filters: Filters,
    *,
    wanted: str | None = None,
    named: int | None = None,
) -> list[tuple[date, str, int]]:
    """(day, category, downloads) of one rollup dimension's values as categories of ``kind``
    (:data:`CATEGORY`), days without downloads absent, in no particular order: the
    categories whose lowercase is ``wanted``, or else the ``named`` biggest over the range
    and the rest as one ``"other"`` a day (:func:`.stats.pypistats_categories`)."""
    changes.days(end, project)
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return clickhouse.categories(
            con, project, dimension, kind, start, end, filters, wanted=wanted, named=named
        )
    source, params = daily(con, project=project, dimensions=[dimension], start=start, end=end)
    per_value = (
        "SELECT day, value, sum(downloads) AS per_value FROM daily "
        f"WHERE {_filters(filters)} GROUP BY day, value HAVING sum(downloads) > 0"
    )
    folded = pypistats_categories(per_value, CATEGORY[kind], "?" if wanted else None, named)
    rows = con.execute(
        f"WITH daily AS ({source}) {folded}", [*params, *([wanted] if wanted else [])]
    ).fetchall()
    return [(row[0], row[1], int(row[2])) for row in rows]


PERIOD_START = {
    "day": "day",
    "week": "CAST(date_trunc('week', day) AS DATE)",
    "month": "CAST(date_trunc('month', day) AS DATE)",
}


def breakdowns(
    con: Connection,
    project: str,
    dimensions: list[str],
    interval: str,
    start: date,
    end: date,
    filters: Filters,
    leaders: int,
    rows: int,
) -> Breakdowns:
    """Every breakdown of a project page in one scan of its rollups: per period, the
    ``leaders`` biggest values of each rollup dimension ('' the total); the ``rows``
    biggest values over the range; how many others, and their downloads."""
    if not isinstance(con, duckdb.DuckDBPyConnection):
        changes.days(end, project)
        return clickhouse.breakdowns(
            con, project, dimensions, interval, start, end, filters, leaders, rows
        )
    shape = (",".join(dimensions), interval, start, end, *_flags(filters), leaders, rows)
    return settled.part(
        ("breakdowns", project, *shape),
        lambda: _breakdowns(con, project, dimensions, interval, start, end, filters, leaders, rows),
    )


def _breakdowns(
    con: duckdb.DuckDBPyConnection,
    project: str,
    dimensions: list[str],
    interval: str,
    start: date,
    end: date,
    filters: Filters,
    leaders: int,
    rows: int,
) -> Breakdowns:
    changes.days(end, project)
    source, params = daily(con, project=project, dimensions=dimensions, start=start, end=end)
    periods = (
        f"SELECT dimension, {PERIOD_START[interval]} AS period, value, "
        f"sum(downloads)::BIGINT AS n FROM daily WHERE {_filters(filters)} GROUP BY ALL"
    )
    found = con.execute(
        f"WITH daily AS ({source}), ranked AS ({ranked_periods(periods)}) "
        "SELECT 0 AS part, dimension, period, value, n, NULL::BIGINT AS k FROM ranked "
        "WHERE rank <= ? OR dimension = '' "
        "UNION ALL SELECT 1, dimension, NULL, value, any_value(total)::BIGINT, min(rank) "
        "FROM ranked WHERE rank <= ? AND dimension <> '' GROUP BY dimension, value "
        "UNION ALL SELECT 2, dimension, NULL, NULL, sum(n)::BIGINT, count(DISTINCT rank) "
        "FROM ranked WHERE rank > ? AND dimension <> '' GROUP BY dimension "
        "ORDER BY part, dimension, period, k, value NULLS LAST",
        [*params, leaders, rows, rows],
    ).fetchall()
    return gather_breakdowns(found, dimensions)


def overall(
    con: Connection, project: str, start: date | None, end: date
) -> list[tuple[date, int, int]]:
    """(day, with mirrors, without mirrors) per day with downloads, CI included."""
    changes.days(end, project)
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return clickhouse.overall(con, project, start, end)
    source, params = daily(con, project=project, dimensions=[""], start=start, end=end)
    rows = con.execute(
        f"WITH daily AS ({source}) SELECT day, sum(downloads)::BIGINT, "
        "coalesce(sum(downloads) FILTER (NOT mirror), 0)::BIGINT FROM daily "
        "GROUP BY day ORDER BY day",
        params,
    ).fetchall()
    return [(row[0], int(row[1]), int(row[2])) for row in rows]


_RECENT = (
    "coalesce(sum(downloads) FILTER (day = ?), 0)::BIGINT, "
    "coalesce(sum(downloads) FILTER (day > ? AND day <= ?), 0)::BIGINT, "
    "coalesce(sum(downloads) FILTER (day > ? AND day <= ?), 0)::BIGINT"
)
"""SQL sums of a totals source: the last complete day, and the last 7 and 30 complete days
(parameters: :func:`_recent_params`)."""


def _recent_params(end: date) -> list[date]:
    return [end, end - timedelta(days=7), end, end - timedelta(days=30), end]


def _recent_of(found: Any) -> dict[str, int]:
    return {"day": int(found[0]), "week": int(found[1]), "month": int(found[2])}


def recent(con: Connection, project: str, end: date, filters: Filters) -> dict[str, int]:
    """Downloads on the last complete day and in the last 7 and 30 complete days."""
    changes.days(end, project)
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return clickhouse.recent(con, project, end, filters)
    source, params = daily(
        con, project=project, dimensions=[""], start=end - timedelta(days=29), end=end
    )
    found = con.execute(
        f"WITH daily AS ({source}) SELECT {_RECENT} FROM daily WHERE {_filters(filters)}",
        [*params, *_recent_params(end)],
    ).fetchone()
    assert found is not None
    return _recent_of(found)


def total(con: Connection, project: str, end: date, filters: Filters) -> int:
    """All-time downloads (a badge's ``total``): the totals alone, no breakdown; those up
    to ``end`` (the last complete day) a settled part (:mod:`.settled`)."""
    if not isinstance(con, duckdb.DuckDBPyConnection):
        changes.days(None, project)
        return clickhouse.total(con, project, filters)
    through = settled.part(
        ("total", project, end, *_flags(filters)), lambda: _total(con, project, end, filters)
    )
    return through + _after(con, project, end, filters)[0]


def _total(con: duckdb.DuckDBPyConnection, project: str, end: date, filters: Filters) -> int:
    changes.days(end, project)
    source, params = daily(con, project=project, dimensions=[""], end=end)
    found = con.execute(
        f"WITH daily AS ({source}) SELECT coalesce(sum(downloads), 0)::BIGINT FROM daily "
        f"WHERE {_filters(filters)}",
        params,
    ).fetchone()
    assert found is not None
    return int(found[0])


def _after(
    con: duckdb.DuckDBPyConnection, project: str, end: date, filters: Filters
) -> tuple[int, date | None, date | None]:
    """The downloads after ``end`` (today's: one project's few totals rows of the open
    days), and their first and last day."""
    changes.days(None, project)
    source, params = daily(con, project=project, dimensions=[""], start=end + timedelta(days=1))
    found = con.execute(
        f"WITH daily AS ({source}) SELECT coalesce(sum(downloads), 0)::BIGINT, min(day), "
        f"max(day) FROM daily WHERE {_filters(filters)}",
        params,
    ).fetchone()
    assert found is not None
    return int(found[0]), found[1], found[2]


def latest_release(con: Connection, project: str) -> dict[str, Any] | None:
    """The project's latest version and its summary, from ``distribution_metadata``: the
    highest final release (PEP 440 order; a pre-release only when there is nothing else),
    its most recently uploaded file's summary. None when no file of it has a row. The table
    keeps every upload (as PyPI's does), so a yanked or deleted release may be the latest."""
    changes.uploads()
    if not isinstance(con, duckdb.DuckDBPyConnection):
        rows = clickhouse.uploads(con, project)
    else:
        rows = uploads(con, project)
    releases: dict[Release, tuple[str, str | None]] = {}
    for text, about in rows:  # later uploads of a version win
        try:
            releases[Release(text)] = (text, about)
        except InvalidVersion:
            continue
    finals = [version for version in releases if not version.is_prerelease]
    if not releases:
        return None
    version, about = releases[max(finals or releases)]
    return {"version": version, "summary": about}


def summary(
    con: Connection, project: str, end: date, filters: Filters, *, versions: bool = True
) -> dict[str, Any]:
    """All-time total, first and last day with downloads, recent totals, top versions (of
    30 days; an empty list unless ``versions``: a project page does not show them), and the
    latest release (:func:`latest_release`). What reads days up to ``end`` (the last
    complete day) is a settled part (:mod:`.settled`), composed with the days after it."""
    if not isinstance(con, duckdb.DuckDBPyConnection):
        changes.days(None, project)
        found = clickhouse.summary(con, project, end, filters)
        return {**found, "latest": latest_release(con, project)}
    through = settled.part(
        ("summary", project, end, *_flags(filters), versions),
        lambda: _summary(con, project, end, filters, versions),
    )
    downloads, first_day, last_day = _after(con, project, end, filters)
    return {
        **through,
        "total": through["total"] + downloads,
        "first_day": through["first_day"] or first_day,
        "last_day": last_day or through["last_day"],
        "latest": latest_release(con, project),
    }


def _summary(
    con: duckdb.DuckDBPyConnection, project: str, end: date, filters: Filters, versions: bool
) -> dict[str, Any]:
    """:func:`summary` of the days up to ``end``, without the latest release (any publish
    with uploads may change it).

    One statement (the rollups' marks read once, one plan) for what took three: the totals
    with the recent sums over them, then the top versions of 30 days if asked. A cold
    project page paid for those versions without showing them: about 14 ms of CPU of its
    70 ms for a long-tail project (3M rows, BENCHMARKS.md), half of it planning the open
    days' rows that a breakdown reads.
    """
    changes.days(end, project)
    where = _filters(filters)
    totals, params = daily(con, project=project, dimensions=[""], end=end)
    sources = [f"totals AS ({totals})"]
    parts = [
        "SELECT 0 AS part, NULL::VARCHAR AS version, coalesce(sum(downloads), 0)::BIGINT, "
        f"min(day), max(day), {_RECENT} FROM totals WHERE {where}"
    ]
    if versions:
        source, more = daily(
            con, project=project, dimensions=["version"], start=end - timedelta(days=29), end=end
        )
        sources.append(f"versions AS ({source})")
        params += more
        parts.append(
            "(SELECT 1, value, sum(downloads)::BIGINT AS n, NULL, NULL, NULL, NULL, NULL "
            f"FROM versions WHERE {where} GROUP BY value ORDER BY n DESC, value LIMIT 10)"
        )
    rows = con.execute(
        f"WITH {', '.join(sources)} {' UNION ALL '.join(parts)} ORDER BY part, 3 DESC, 2",
        [*params, *_recent_params(end)],
    ).fetchall()
    (_, _, downloads, first_day, last_day, *sums), *top_versions = rows
    return {
        "total": int(downloads),
        "first_day": first_day,
        "last_day": last_day,
        "recent": _recent_of(sums),
        "top_versions": [{"version": v, "downloads": int(n)} for _, v, n, *_ in top_versions],
    }


def top(
    con: Connection, days: int, end: date, limit: int, filters: Filters
) -> list[tuple[str, int]]:
    """The most downloaded projects in the ``days`` days up to ``end``."""
    changes.days(end)
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return clickhouse.top(con, days, end, limit, filters)
    result = query_breakdown(
        con, None, ["project"], end - timedelta(days=days - 1), end, limit, filters
    )
    return [(row[0], int(row[1])) for row in result.rows]


def trending(
    con: Connection, end: date, floor: int, limit: int, filters: Filters
) -> list[dict[str, Any]]:
    """Growth of the daily rate over the last 7 days against the 30 days before, for
    projects with at least ``floor`` downloads in those 30 days."""
    changes.days(end)
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return clickhouse.trending(con, end, floor, limit, filters)
    week_start = end - timedelta(days=7)
    source, params = daily(con, dimensions=[""], start=end - timedelta(days=36), end=end)
    rows = con.execute(
        f"WITH daily AS ({source}) "
        "SELECT project, recent, before, (recent / 7.0) / (before / 30.0) AS growth FROM ("
        "SELECT project, coalesce(sum(downloads) FILTER (day > ?), 0) AS recent, "
        "coalesce(sum(downloads) FILTER (day <= ?), 0) AS before "
        f"FROM daily WHERE {_filters(filters)} GROUP BY project) "
        "WHERE before >= greatest(?, 1) ORDER BY growth DESC, project LIMIT ?",
        [*params, week_start, week_start, floor, limit],
    ).fetchall()
    return [
        {"project": p, "last_7_days": int(r), "previous_30_days": int(b), "growth": round(g, 3)}
        for p, r, b, g in rows
    ]


def _flags(filters: Filters) -> tuple[bool, bool]:
    """``filters`` in a settled part's key (plain values: the key is kept as a plain tuple)."""
    return filters.mirrors, filters.ci


def _filters(filters: Filters) -> str:
    """The SQL condition on rollup rows that leaves out what ``filters`` exclude."""
    conditions = ["true"]
    if not filters.mirrors:
        conditions.append("NOT mirror")
    if not filters.ci:
        conditions.append("ci IS NOT TRUE")
    return " AND ".join(conditions)


def search(con: Connection, prefix: str, limit: int) -> list[str]:
    """Known projects whose normalised name starts with ``prefix`` (names any publish may
    add)."""
    changes.volatile()
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return clickhouse.search(con, prefix, limit)
    rows = con.execute(
        f"SELECT DISTINCT normalized FROM {PROJECTS} WHERE starts_with(normalized, ?) "
        "ORDER BY normalized LIMIT ?",
        [prefix, limit],
    ).fetchall()
    return [row[0] for row in rows]


def downloads(
    con: Connection,
    project: str,
    fields: list[str],
    start: date,
    end: date,
    filters: Filters,
    limit: int | None = None,
) -> Breakdown:
    """Any breakdown ``stats --by`` offers (the same function answers the CLI), its first
    ``limit`` rows (the total counts them all)."""
    changes.days(end, project)
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return clickhouse.query_breakdown(con, project, fields, start, end, limit, filters)
    return query_breakdown(con, project, fields, start, end, limit, filters)
