"""``pythonhosted stats`` and the stats web's questions, asked of ClickHouse.

The same questions as :mod:`pythonhosted.warehouse.stats` and ``stats_web/data.py`` ask of
DuckDB, with the same answers (the tests load the same files into both engines and compare
every answer): a breakdown by time and at most one rolled-up field reads the rollups (the
``SummingMergeTree`` the materialized view fills; rows of one key are summed here, as merges
happen whenever ClickHouse likes), any other breakdown is one ``GROUP BY`` over the rows,
which sit ordered by project, so one project's rows are a few granules of the table.

A download is a row that sent the file's first byte (:data:`.tables.COUNTED`, in the rollups
already); ``with_bytes`` reads the rows and adds the bytes every response sent.
``requires-python`` joins ``distribution_metadata`` on the downloaded file's name (DuckDB asks
a correlated subquery, which ClickHouse servers before 25.x lack); ``among`` narrows to a
group's projects (:mod:`pythonhosted.warehouse.groups`).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from packaging.utils import canonicalize_name

from pythonhosted.warehouse.base import WarehouseError
from pythonhosted.warehouse.clickhouse.engines import Engine
from pythonhosted.warehouse.clickhouse.tables import (
    COUNTED,
    LOADED,
    MIRROR,
    NORMALIZED,
    PROJECTS,
    PYTHON_MINOR,
    ROLLUPS,
)
from pythonhosted.warehouse.groups import FACTS_SQL, Group, members
from pythonhosted.warehouse.stats import (
    FIELDS,
    FIRST_DAY,
    SYSTEMS_SQL,
    TIME_FIELDS,
    Breakdown,
    Breakdowns,
    EmptyWarehouse,
    Filters,
    UnknownProject,
    gather_breakdowns,
    pypistats_categories,
    ranked_periods,
    rollup_dimension,
)
from pythonhosted.warehouse.suggestions import LONGEST

ROW_FIELDS: dict[str, str] = {
    "day": "toDate(timestamp)",
    "week": "toMonday(timestamp)",
    "month": "formatDateTime(timestamp, '%Y-%m')",
    "project": NORMALIZED,
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
    "requires-python": "uploaded.requires_python",
}
assert set(ROW_FIELDS) == set(FIELDS)
# Each downloaded file's Requires-Python, for the ``requires-python`` field.
_UPLOADED = (
    " LEFT JOIN (SELECT filename, any(requires_python) AS requires_python "
    "FROM distribution_metadata FINAL GROUP BY filename) AS uploaded "
    "ON uploaded.filename = file_downloads.file.filename"
)
_ROLLUP_TIME = {"day": "day", "week": "toMonday(day)", "month": "formatDateTime(day, '%Y-%m')"}
PERIOD_START = {"day": "day", "week": "toMonday(day)", "month": "toStartOfMonth(day)"}
_NOT_CI = "NOT ifNull(ci, false)"
EVERYTHING_BUT_MIRRORS = Filters()


def _filters(filters: Filters, *, rows: bool = False) -> str:
    where = ""
    if not filters.mirrors:
        where += f" AND NOT {MIRROR}" if rows else " AND NOT mirror"
    if not filters.ci:
        where += " AND NOT ifNull(details.ci, false)" if rows else f" AND {_NOT_CI}"
    return where


def check_ready(engine: Engine) -> None:
    """EmptyWarehouse unless the warehouse holds downloads (and its rollups)."""
    tables = {
        row[0]
        for row in engine.rows("SELECT name FROM system.tables WHERE database = currentDatabase()")
    }
    if "file_downloads" not in tables or not engine.rows("SELECT 1 FROM file_downloads LIMIT 1"):
        raise EmptyWarehouse(f"the warehouse at {engine.name} holds no downloads yet")
    if PROJECTS not in tables:
        raise WarehouseError(
            f"the warehouse at {engine.name} has no rollups yet: let publish load once"
        )
    if "distribution_metadata" not in tables:
        raise WarehouseError(
            f"the warehouse at {engine.name} has no distribution_metadata yet (made by an older "
            "release): let publish load once"
        )


def check_project(engine: Engine, name: str) -> str:
    """The normalised name of a project with recorded downloads, else UnknownProject."""
    normalized = canonicalize_name(name)
    found = engine.rows(
        f"SELECT 1 FROM {PROJECTS} WHERE normalized = {{name:String}} LIMIT 1", {"name": normalized}
    )
    if not found:
        raise UnknownProject(name, close_names(engine, normalized))
    return normalized


def close_names(engine: Engine, normalized: str, limit: int = 3) -> list[str]:
    """Recorded project names that look like ``normalized`` (Jaro-Winkler, as DuckDB's);
    none for a name past :data:`~pythonhosted.warehouse.suggestions.LONGEST` characters, as
    DuckDB's index: each comparison costs about the product of the two lengths, and an
    unknown name of 7,000 characters cost 2.7 s against 100,000 names."""
    if len(normalized) > LONGEST:
        return []
    rows = engine.rows(
        "SELECT normalized, jaroWinklerSimilarity(normalized, {name:String}) AS score "
        f"FROM (SELECT DISTINCT normalized FROM {PROJECTS}) WHERE score >= 0.8 "
        "ORDER BY score DESC, normalized LIMIT {limit:UInt32}",
        {"name": normalized, "limit": limit},
    )
    return [row[0] for row in rows]


def _order(fields: list[str]) -> str:
    columns = [f"f{index}" for index in range(len(fields))]
    if fields and fields[0] in TIME_FIELDS:
        return ", ".join([*columns, "download_count DESC"])
    return ", ".join(["download_count DESC", *(f"{column} NULLS LAST" for column in columns)])


def query_breakdown(
    engine: Engine,
    normalized: str | None,
    fields: list[str],
    start: date | None,
    end: date,
    limit: int | None = None,
    filters: Filters = EVERYTHING_BUT_MIRRORS,
    *,
    among: list[str] | None = None,
    with_bytes: bool = False,
) -> Breakdown:
    """:func:`pythonhosted.warehouse.stats.query_breakdown`, of ClickHouse."""
    grouped = [name for name in fields if name != "project"] if normalized is None else fields
    dimension = None if with_bytes else rollup_dimension(grouped)
    top = normalized is None and "project" in fields
    params: dict[str, object] = {"end": end, "start": start or FIRST_DAY}
    if normalized is not None:
        params["project"] = normalized
    elif among is not None:
        params["among"] = among
    counts = ["toInt64(count()) AS download_count"]
    if dimension is not None and (normalized is not None or top or among is not None):
        columns = {**_ROLLUP_TIME, "project": "project", "ci": "ci", dimension: "value"}
        params["dimension"] = dimension
        where = "day BETWEEN {start:Date32} AND {end:Date32} AND dimension = {dimension:String}"
        if normalized is not None:
            where += " AND project = {project:String}"
        elif among is not None:
            where += " AND has({among:Array(String)}, project)"
        counts = ["toInt64(sum(downloads)) AS download_count"]
        source = ROLLUPS
    else:
        columns = ROW_FIELDS
        params["after"] = datetime.combine(end + timedelta(days=1), time())
        params["from"] = datetime.combine(start or FIRST_DAY, time())
        where = (
            "timestamp >= {from:DateTime64(6, 'UTC')} AND timestamp < {after:DateTime64(6, 'UTC')}"
        )
        if normalized is not None:
            spellings = f"SELECT name FROM {PROJECTS} WHERE normalized = {{project:String}}"
            where += f" AND project IN ({spellings})"
        elif among is not None:
            spellings = (
                f"SELECT name FROM {PROJECTS} WHERE has({{among:Array(String)}}, normalized)"
            )
            where += f" AND project IN ({spellings})"
        if with_bytes:  # every response's bytes: the downloads counted among them
            counts = [
                f"toInt64(countIf({COUNTED})) AS download_count",
                "toInt64(sum(response.bytes_sent)) AS bytes_sent",
            ]
        else:
            where += f" AND {COUNTED}"
        source = "file_downloads" + (_UPLOADED if "requires-python" in fields else "")
    where += _filters(filters, rows=source != ROLLUPS)
    selected = [f"{columns[name]} AS f{index}" for index, name in enumerate(fields)]
    sql = f"SELECT {', '.join([*selected, *counts])} FROM {source} WHERE {where}"
    extra = len(counts)
    if not fields:
        found = engine.rows(sql, params)
        total = int(found[0][0] or 0)
        total_bytes = int(found[0][-1] or 0)
        rows = found if total or (with_bytes and total_bytes) else []
    else:
        totals = ["download_count", "bytes_sent"][:extra]
        sums = ", ".join(f"toInt64(sum({name}) OVER ())" for name in totals)
        having = "" if with_bytes else " HAVING download_count > 0"
        sql = f"SELECT *, {sums} FROM ({sql} GROUP BY ALL{having}) ORDER BY {_order(fields)}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        found = engine.rows(sql, params)
        total = int(found[0][-extra]) if found else 0
        total_bytes = int(found[0][-1] or 0) if found else 0
        rows = [row[:-extra] for row in found]
    if with_bytes:
        rows = [(*row[:-1], int(row[-1] or 0)) for row in rows]
    return Breakdown(fields, rows, total, start, end, total_bytes if with_bytes else None)


def breakdown(
    engine: Engine,
    project: str | None,
    fields: list[str],
    start: date | None,
    end: date,
    limit: int | None = None,
    filters: Filters = EVERYTHING_BUT_MIRRORS,
    *,
    among: list[str] | None = None,
    with_bytes: bool = False,
) -> Breakdown:
    """:func:`pythonhosted.warehouse.stats.breakdown`, of ClickHouse."""
    unknown = [name for name in fields if name not in FIELDS]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (choose from {', '.join(FIELDS)})")
    check_ready(engine)
    normalized = check_project(engine, project) if project is not None else None
    return query_breakdown(
        engine, normalized, fields, start, end, limit, filters, among=among, with_bytes=with_bytes
    )


def group_projects(engine: Engine, group: Group) -> list[str]:
    """The normalised names of the group's projects (:mod:`pythonhosted.warehouse.groups`)."""
    check_ready(engine)
    return members(group, engine.rows(FACTS_SQL))


def uploads(engine: Engine, project: str) -> list[tuple[str, str | None]]:
    """(version, summary) of each uploaded file of ``project`` (normalised), oldest first."""
    rows = engine.rows(
        "SELECT version, summary FROM distribution_metadata FINAL "
        "WHERE lower(replaceRegexpAll(name, '[-_.]+', '-')) = {project:String} "
        "ORDER BY upload_time",
        {"project": project},
    )
    return [(row[0], row[1]) for row in rows]


def data_version(engine: Engine) -> tuple[int, datetime | None]:
    """(loads that changed the data, time of the latest): the stats web's cache key."""
    ((count, latest),) = engine.rows(f"SELECT count(), max(loaded_at) FROM {LOADED}")
    return int(count), latest if count else None


CATEGORY: dict[str, str] = {
    "value": "coalesce(value, 'null')",
    "major": "if(isNull(value), 'null', splitByChar('.', assumeNotNull(value))[1])",
    "system": f"multiIf(isNull(value), 'null', value IN ({SYSTEMS_SQL}), "
    "assumeNotNull(value), 'other')",
}
"""``stats_web.data.CATEGORY``, of ClickHouse."""


def categories(
    engine: Engine,
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
    """``stats_web.data.categories``, of ClickHouse."""
    per_value = (
        f"SELECT day, value, toInt64(sum(downloads)) AS per_value FROM {ROLLUPS} "
        "WHERE project = {project:String} AND dimension = {dimension:String} "
        "AND day BETWEEN {start:Date32} AND {end:Date32}"
        f"{_filters(filters)} GROUP BY day, value HAVING per_value > 0"
    )
    wanted_sql = "{wanted:String}" if wanted else None
    rows = engine.rows(
        pypistats_categories(per_value, CATEGORY[kind], wanted_sql, named),
        {
            "project": project,
            "dimension": dimension,
            "start": start or FIRST_DAY,
            "end": end,
            **({"wanted": wanted} if wanted else {}),
        },
    )
    return [(row[0], row[1], int(row[2])) for row in rows]


def breakdowns(
    engine: Engine,
    project: str,
    dimensions: list[str],
    interval: str,
    start: date,
    end: date,
    filters: Filters,
    leaders: int,
    rows: int,
) -> Breakdowns:
    """``stats_web.data.breakdowns``, of ClickHouse."""
    periods = (
        f"SELECT dimension, {PERIOD_START[interval]} AS period, value, "
        f"toInt64(sum(downloads)) AS n FROM {ROLLUPS} WHERE project = {{project:String}} "
        "AND has({dimensions:Array(String)}, dimension) AND day BETWEEN {start:Date32} AND "
        f"{{end:Date32}}{_filters(filters)} GROUP BY dimension, period, value"
    )
    found = engine.rows(
        f"WITH ranked AS ({ranked_periods(periods)}) SELECT * FROM ("
        "SELECT 0 AS part, dimension, period, value, n, toInt64(0) AS k FROM ranked "
        "WHERE rank <= {leaders:UInt32} OR dimension = '' "
        "UNION ALL SELECT 1, dimension, NULL, value, toInt64(any(total)), toInt64(min(rank)) "
        "FROM ranked WHERE rank <= {rows:UInt32} AND dimension != '' GROUP BY dimension, value "
        "UNION ALL SELECT 2, dimension, NULL, NULL, toInt64(sum(n)), toInt64(uniqExact(rank)) "
        "FROM ranked WHERE rank > {rows:UInt32} AND dimension != '' GROUP BY dimension) "
        "ORDER BY part, dimension, period, k, value NULLS LAST",
        {
            "project": project,
            "dimensions": dimensions,
            "start": start,
            "end": end,
            "leaders": leaders,
            "rows": rows,
        },
    )
    return gather_breakdowns(found, dimensions)


def overall(
    engine: Engine, project: str, start: date | None, end: date
) -> list[tuple[date, int, int]]:
    """(day, with mirrors, without mirrors) per day with downloads, CI included."""
    rows = engine.rows(
        "SELECT day, toInt64(sum(downloads)) AS n, toInt64(sumIf(downloads, NOT mirror)) "
        f"FROM {ROLLUPS} WHERE project = {{project:String}} AND dimension = '' "
        "AND day BETWEEN {start:Date32} AND {end:Date32} GROUP BY day ORDER BY day",
        {"project": project, "start": start or FIRST_DAY, "end": end},
    )
    return [(row[0], int(row[1]), int(row[2])) for row in rows]


def recent(engine: Engine, project: str, end: date, filters: Filters) -> dict[str, int]:
    """Downloads on the last complete day and in the last 7 and 30 complete days."""
    ((day, week, month),) = engine.rows(
        "SELECT toInt64(sumIf(downloads, day = {end:Date32})), "
        "toInt64(sumIf(downloads, day > {week:Date32})), toInt64(sum(downloads)) "
        f"FROM {ROLLUPS} WHERE project = {{project:String}} AND dimension = '' "
        f"AND day BETWEEN {{month:Date32}} AND {{end:Date32}}{_filters(filters)}",
        {
            "project": project,
            "end": end,
            "week": end - timedelta(days=7),
            "month": end - timedelta(days=29),
        },
    )
    return {"day": int(day), "week": int(week), "month": int(month)}


def _project_where(filters: Filters) -> str:
    return f"project = {{project:String}} AND dimension = {{dimension:String}}{_filters(filters)}"


def total(engine: Engine, project: str, filters: Filters) -> int:
    """All-time downloads."""
    ((downloads,),) = engine.rows(
        f"SELECT toInt64(sum(downloads)) FROM {ROLLUPS} WHERE {_project_where(filters)}",
        {"project": project, "dimension": ""},
    )
    return int(downloads)


def summary(engine: Engine, project: str, end: date, filters: Filters) -> dict[str, Any]:
    """All-time total, first and last day with downloads, recent totals, top versions."""
    where = _project_where(filters)
    ((total, first, last),) = engine.rows(
        f"SELECT toInt64(sum(downloads)), min(day), max(day) FROM {ROLLUPS} WHERE {where}",
        {"project": project, "dimension": ""},
    )
    versions = engine.rows(
        f"SELECT value, toInt64(sum(downloads)) AS n FROM {ROLLUPS} WHERE {where} "
        "AND day > {after:Date32} AND day <= {end:Date32} GROUP BY value "
        "ORDER BY n DESC, value LIMIT 10",
        {"project": project, "dimension": "version", "after": end - timedelta(days=30), "end": end},
    )
    return {
        "total": int(total),
        "first_day": first if total else None,
        "last_day": last if total else None,
        "recent": recent(engine, project, end, filters),
        "top_versions": [{"version": v, "downloads": int(n)} for v, n in versions],
    }


def top(
    engine: Engine, days: int, end: date, limit: int, filters: Filters
) -> list[tuple[str, int]]:
    """The most downloaded projects in the ``days`` days up to ``end``."""
    result = query_breakdown(
        engine, None, ["project"], end - timedelta(days=days - 1), end, limit, filters
    )
    return [(row[0], int(row[1])) for row in result.rows]


def trending(
    engine: Engine, end: date, floor: int, limit: int, filters: Filters
) -> list[dict[str, Any]]:
    """Growth of the daily rate over the last 7 days against the 30 days before."""
    rows = engine.rows(
        "SELECT project, recent, before, (recent / 7.0) / (before / 30.0) AS growth FROM ("
        "SELECT project, sumIf(downloads, day > {week:Date32}) AS recent, "
        "sumIf(downloads, day <= {week:Date32}) AS before "
        f"FROM {ROLLUPS} WHERE dimension = '' AND day > {{first:Date32}} AND day <= {{end:Date32}}"
        f"{_filters(filters)} GROUP BY project) "
        "WHERE before >= greatest({floor:Int64}, 1) ORDER BY growth DESC, project "
        "LIMIT {limit:UInt32}",
        {
            "week": end - timedelta(days=7),
            "first": end - timedelta(days=37),
            "end": end,
            "floor": floor,
            "limit": limit,
        },
    )
    return [
        {"project": p, "last_7_days": int(r), "previous_30_days": int(b), "growth": round(g, 3)}
        for p, r, b, g in rows
    ]


def search(engine: Engine, prefix: str, limit: int) -> list[str]:
    """Known projects whose normalised name starts with ``prefix``."""
    rows = engine.rows(
        f"SELECT DISTINCT normalized FROM {PROJECTS} "
        "WHERE startsWith(normalized, {prefix:String}) "
        "ORDER BY normalized LIMIT {limit:UInt32}",
        {"prefix": prefix, "limit": limit},
    )
    return [row[0] for row in rows]


# A batch's start hour, from its result file's name (coverage.BATCH_TIME, as re2 takes it).
_BATCH_TIME = "([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2})-[0-9]{2}-[0-9]{2}"
_BATCHES = (
    "SELECT hour, toInt64(uniqExact(batch)) FROM ("
    f"SELECT parseDateTimeOrNull(extract(name, '{_BATCH_TIME}'), '%Y-%m-%dT%H', 'UTC') AS hour, "
    "replaceRegexpOne(extract(name, '[^/]*$'), '^(downloads|simple)-', '') AS batch "
    f"FROM {LOADED}) WHERE hour IS NOT NULL GROUP BY hour"
)


def per_hour(
    engine: Engine, first: datetime, stop: datetime
) -> tuple[dict[datetime, int], dict[datetime, int], dict[datetime, int]]:
    """Downloads and simple requests per event hour in [first, stop), and log batches
    loaded per batch hour (``stats --coverage`` of ClickHouse)."""
    counts = []
    for table in ("file_downloads", "simple_requests"):
        rows = engine.rows(
            f"SELECT toStartOfHour(timestamp) AS hour, toInt64(count()) FROM {table} "
            "WHERE timestamp >= {first:DateTime64(6, 'UTC')} "
            "AND timestamp < {stop:DateTime64(6, 'UTC')} GROUP BY hour",
            {"first": first, "stop": stop},
        )
        counts.append({hour: int(count) for hour, count in rows})
    batches = {hour: int(count) for hour, count in engine.rows(_BATCHES)}
    return counts[0], counts[1], batches


def latest_batch_hour(engine: Engine) -> datetime | None:
    """The start hour of the latest log batch loaded, if any."""
    rows = engine.rows(f"SELECT max(hour), count() FROM ({_BATCHES})")
    return rows[0][0] if rows and rows[0][1] else None
