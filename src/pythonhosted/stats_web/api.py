"""The JSON API: pypistats.org's routes and shapes, and our ``/api/v1`` routes.

pypistats-compatible routes follow pypistats' rules: mirrors left out except in
``overall``, CI included, data rows sorted by date then category, days without downloads
absent, a missing value's category the string ``"null"``. Unlike pypistats, history is not
cut at 180 days (``start``/``end`` narrow it), and a breakdown names at most
:data:`CATEGORIES` categories, the rest summed as ``"other"``. Our routes leave mirrors and
CI out unless ``mirrors=true`` / ``ci=true``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from packaging.utils import canonicalize_name

from pythonhosted.stats_web import changes, data
from pythonhosted.stats_web.data import Connection
from pythonhosted.stats_web.params import BadParameter, NotFound, Params
from pythonhosted.warehouse.stats import FIELDS, TIME_FIELDS, Filters

JSON = b"application/json"
BY_FIELDS = tuple(name for name in FIELDS if name not in (*TIME_FIELDS, "project"))
INTERVALS = {"day": "day", "week": "week", "month": "month"}
_PYTHON_MINOR = re.compile(r"\d+\.\d+|null")
CATEGORIES = 30
"""The most categories a pypistats-shaped breakdown names over its range; the others are one
``"other"`` category a day, the word pypistats' ``system`` route uses for the systems it does
not name. Python versions come from clients' user agents, so a client could add categories
without bound, and every one was in the answer for every day (real data has about 20)."""


@dataclass(frozen=True)
class Context:
    """What every answer depends on besides the data: the last complete day, the
    watermark, settings."""

    end: date  # the last complete UTC day
    complete_through: datetime | None  # the watermark: read it as ``watermark``
    trending_floor: int

    @property
    def watermark(self) -> datetime | None:
        """The watermark, noted as shown (:func:`.changes.watermark`)."""
        changes.watermark(self.complete_through)
        return self.complete_through


def dumps(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)


def _pypistats_rows(rows: list[tuple[date, str, int]]) -> list[dict[str, Any]]:
    ordered = sorted(rows, key=lambda row: (row[0], row[1]))
    return [{"category": c, "date": d.isoformat(), "downloads": n} for d, c, n in ordered]


def _range(params: Params, ctx: Context, default_days: int | None) -> tuple[date | None, date]:
    end = params.day("end") or ctx.end
    start = params.day("start")
    if start is None and default_days is not None:
        start = end - timedelta(days=default_days - 1)
    if start is not None and start > end:
        raise BadParameter("start", f"{start} is after end {end}")
    return start, end


def recent(con: Connection, project: str, params: Params, ctx: Context) -> Any:
    period = params.choice("period", ("day", "week", "month"))
    counts = data.recent(con, project, ctx.end, Filters(mirrors=False, ci=True))
    chosen = [period] if period else ["day", "week", "month"]
    body = {f"last_{name}": counts[name] for name in chosen}
    return {"data": body, "package": project, "type": "recent_downloads"}


def overall(con: Connection, project: str, params: Params, ctx: Context) -> Any:
    mirrors = params.choice("mirrors", ("true", "false"))
    start, end = _range(params, ctx, None)
    rows: list[tuple[date, str, int]] = []
    for day, with_mirrors, without in data.overall(con, project, start, end):
        if mirrors != "false" and with_mirrors:
            rows.append((day, "with_mirrors", with_mirrors))
        if mirrors != "true" and without:
            rows.append((day, "without_mirrors", without))
    return {"data": _pypistats_rows(rows), "package": project, "type": "overall_downloads"}


def _dimension_route(
    dimension: str, param: str, kind: str, category: str, check: re.Pattern[str]
) -> Callable[[Connection, str, Params, Context], Any]:
    def route(con: Connection, project: str, params: Params, ctx: Context) -> Any:
        wanted = (params.text(param) or "").lower()
        if wanted and not check.fullmatch(wanted):
            raise BadParameter(param, f"{wanted!r} is not a category of {kind}")
        start, end = _range(params, ctx, None)
        filters = Filters(mirrors=False, ci=True)
        rows = data.categories(
            con,
            project,
            dimension,
            category,
            start,
            end,
            filters,
            wanted=wanted or None,
            named=None if wanted else CATEGORIES,
        )
        return {"data": _pypistats_rows(rows), "package": project, "type": f"{kind}_downloads"}

    return route


PYPISTATS: dict[str, Callable[[Connection, str, Params, Context], Any]] = {
    "recent": recent,
    "overall": overall,
    "python_major": _dimension_route(
        "python", "version", "python_major", "major", re.compile(r"\d+|null")
    ),
    "python_minor": _dimension_route("python", "version", "python_minor", "value", _PYTHON_MINOR),
    "system": _dimension_route(
        "system", "os", "system", "system", re.compile(r"windows|linux|darwin|other|null")
    ),
}


def _filters(params: Params) -> Filters:
    return Filters(mirrors=params.flag("mirrors", False), ci=params.flag("ci", False))


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


ROWS = 10_000
"""The most rows a downloads answer holds (``limit``). A breakdown by fields of many values
(``by=file,country,installer-version``) over a long range has millions of rows: each was read
into the worker, then written out, several hundred MB at once per answer."""


def project_downloads(con: Connection, project: str, params: Params, ctx: Context) -> Any:
    fields = [name.strip() for name in (params.text("by") or "").split(",") if name.strip()]
    for name in fields:
        if name not in BY_FIELDS:
            raise BadParameter("by", f"unknown field {name!r} (choose from {', '.join(BY_FIELDS)})")
    if len(set(fields)) != len(fields):
        raise BadParameter("by", "a field is named twice")
    interval = params.choice("interval", tuple(INTERVALS), "day")
    assert interval is not None
    start, end = _range(params, ctx, 30)
    assert start is not None
    limit = params.number("limit", ROWS, 1, ROWS)
    filters = _filters(params)
    result = data.downloads(con, project, [interval, *fields], start, end, filters, limit + 1)
    rows = [
        {
            "date": _json_value(values[0]),
            **{name: _json_value(v) for name, v in zip(fields, values[1:-1], strict=True)},
            "downloads": values[-1],
        }
        for values in result.rows[:limit]
    ]
    return {
        "project": project,
        "by": fields,
        "interval": interval,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "mirrors": filters.mirrors,
        "ci": filters.ci,
        "total": result.total,
        "rows": rows,
        "truncated": len(result.rows) > limit,
        "complete_through": moment(ctx.watermark),
    }


def project_summary(con: Connection, project: str, params: Params, ctx: Context) -> Any:
    filters = _filters(params)
    found = data.summary(con, project, ctx.end, filters)
    return {
        "project": project,
        "total": found["total"],
        "first_day": _json_value(found["first_day"]),
        "last_day": _json_value(found["last_day"]),
        "last_complete_day": ctx.end.isoformat(),
        "last_day_downloads": found["recent"]["day"],
        "last_week_downloads": found["recent"]["week"],
        "last_month_downloads": found["recent"]["month"],
        "top_versions": found["top_versions"],
        "latest_version": found["latest"]["version"] if found["latest"] else None,
        "summary": found["latest"]["summary"] if found["latest"] else None,
        "mirrors": filters.mirrors,
        "ci": filters.ci,
        "complete_through": moment(ctx.watermark),
    }


def compare(con: Connection, params: Params, ctx: Context) -> Any:
    names = params.names("projects", 2, 5)
    interval = params.choice("interval", tuple(INTERVALS), "day")
    assert interval is not None
    start, end = _range(params, ctx, 30)
    assert start is not None
    filters = _filters(params)
    projects = {}
    for name in names:
        project = data.known(con, name)
        result = data.downloads(con, project, [interval], start, end, filters)
        projects[project] = {
            "total": result.total,
            "rows": [{"date": _json_value(d), "downloads": n} for d, n in result.rows],
        }
    return {
        "projects": projects,
        "interval": interval,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "mirrors": filters.mirrors,
        "ci": filters.ci,
        "complete_through": moment(ctx.watermark),
    }


PERIOD_DAYS = {"day": 1, "week": 7, "month": 30}


def top(con: Connection, params: Params, ctx: Context) -> Any:
    period = params.choice("period", tuple(PERIOD_DAYS), "month")
    assert period is not None
    limit = params.number("limit", 10, 1, 100)
    filters = _filters(params)
    rows = data.top(con, PERIOD_DAYS[period], ctx.end, limit, filters)
    return {
        "period": period,
        "end": ctx.end.isoformat(),
        "projects": [{"project": p, "downloads": n} for p, n in rows],
        "complete_through": moment(ctx.watermark),
    }


def trending(con: Connection, params: Params, ctx: Context) -> Any:
    limit = params.number("limit", 10, 1, 100)
    filters = _filters(params)
    return {
        "end": ctx.end.isoformat(),
        "floor": ctx.trending_floor,
        "projects": data.trending(con, ctx.end, ctx.trending_floor, limit, filters),
        "complete_through": moment(ctx.watermark),
    }


def search(con: Connection, params: Params, ctx: Context) -> Any:
    prefix = canonicalize_name(params.text("q") or "")
    limit = params.number("limit", 20, 1, 100)
    return {"q": prefix, "projects": data.search(con, prefix, limit) if prefix else []}


def moment(when: datetime | None) -> str | None:
    """A UTC hour as the API writes it (``2026-12-05T06:00Z``), as ``stats --coverage``."""
    return when.strftime("%Y-%m-%dT%H:%MZ") if when else None


PROJECT_ROUTES = {"downloads": project_downloads, "summary": project_summary}
ROUTES = {"compare": compare, "top": top, "trending": trending, "search": search}
_PYPISTATS_PATH = re.compile(r"/api/packages/([^/]+)/([a-z_]+)/?")
_PROJECT_PATH = re.compile(r"/api/v1/projects/([^/]+)/([a-z]+)")


def answer(con: Connection, path: str, params: Params, ctx: Context) -> Any:
    """The JSON document for an API path; NotFound, BadParameter or UnknownProject."""
    found = _PYPISTATS_PATH.fullmatch(path)
    if found and found[2] in PYPISTATS:
        return PYPISTATS[found[2]](con, data.known(con, found[1]), params, ctx)
    found = _PROJECT_PATH.fullmatch(path)
    if found and found[2] in PROJECT_ROUTES:
        return PROJECT_ROUTES[found[2]](con, data.known(con, found[1]), params, ctx)
    route = ROUTES.get(path.removeprefix("/api/v1/"))
    if path.startswith("/api/v1/") and route is not None:
        return route(con, params, ctx)
    raise NotFound(path)
