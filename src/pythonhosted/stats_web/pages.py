"""The dashboard pages, rendered on the server (jinja2) with every number in the HTML.

Charts are drawn in the browser by ``static/charts.js`` (uPlot, vendored) from a JSON copy
of the same numbers embedded next to a table of them, so the pages read fine without
JavaScript and to screen readers. Toggles and ranges are plain links (query parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import jinja2
import orjson
from markupsafe import Markup
from packaging.utils import canonicalize_name

from pythonhosted.stats_web import api, data
from pythonhosted.stats_web.data import Connection
from pythonhosted.stats_web.params import BadParameter, NotFound, Params
from pythonhosted.warehouse.mirrors import MIRRORS
from pythonhosted.warehouse.stats import Filters

HTML = b"text/html; charset=utf-8"
RANGES = ("30", "90", "180", "365", "all")
INTERVALS = ("day", "week", "month")
# Rows of a breakdown's table; the rest are one "N others" row. A project with 50,000
# versions made a 3.5 MB page (1.5 s of CPU to render) whose tables no one reads to the end.
TABLE_ROWS = 100
CHART_LINES = 5  # a breakdown's chart draws its biggest values
BREAKDOWNS = {
    "version": "Version",
    "installer": "Installer",
    "python": "Python",
    "system": "System",
    "country": "Country",
}
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("pythonhosted.stats_web", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
Render = Callable[[Connection, api.Context], bytes]


def _number(value: int) -> str:
    return f"{value:,}"


_ENV.filters["n"] = _number


def _render(template: str, **values: Any) -> bytes:
    return _ENV.get_template(template).render(mirrors=MIRRORS, **values).encode()


def error(title: str, message: str, suggestions: list[str] | None = None) -> bytes:
    return _render("error.html", title=title, message=message, suggestions=suggestions or [])


def not_found(path: str) -> bytes:
    return error("Not found", f"Nothing here: {path}")


def _chart_json(x: list[date], series: list[tuple[str, list[int]]]) -> Markup:
    """Chart data for charts.js, safe inside <script type="application/json">."""
    seconds = [int((day - date(1970, 1, 1)).total_seconds()) for day in x]
    document = {"x": seconds, "series": [{"label": s, "values": v} for s, v in series]}
    text = orjson.dumps(document).decode()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # JSON with the HTML-significant characters escaped


def _label(when: date, interval: str) -> str:
    """A period as the tables show it (months as YYYY-MM, as ``stats --by month``)."""
    return when.strftime("%Y-%m") if interval == "month" else when.isoformat()


def _period_start_of(day: date, interval: str) -> date:
    return _periods(day, day, interval)[0]


def _period_start(value: Any) -> date:
    """A time field's value as the first day of its period (months come as YYYY-MM)."""
    if isinstance(value, date):
        return value
    return date.fromisoformat(f"{value}-01")


def _periods(start: date, end: date, interval: str) -> list[date]:
    """Every period start from ``start`` to ``end``, so a chart shows quiet periods as 0."""
    if interval == "week":
        current = start - timedelta(days=start.weekday())  # ISO weeks, as date_trunc
    elif interval == "month":
        current = start.replace(day=1)
    else:
        current = start
    out = []
    while current <= end:
        out.append(current)
        if interval == "week":
            current += timedelta(days=7)
        elif interval == "month":
            current = (current + timedelta(days=32)).replace(day=1)
        else:
            current += timedelta(days=1)
    return out


def route(path: str, params: Params) -> Render:
    """The renderer of a page path (NotFound, BadParameter)."""
    if path in ("/", ""):
        return _home(params)
    if path in ("/about", "/about/"):
        return lambda con, ctx: _render("about.html", title="About", ctx=ctx)
    if path in ("/compare", "/compare/"):
        return _compare(params)
    if path.startswith("/packages/"):
        name = path.removeprefix("/packages/").strip("/")
        if name and "/" not in name:
            return _project(name, params)
    raise NotFound(path)


def _home(params: Params) -> Render:
    """The top lists and trending, or with ``q`` the projects it starts; not both.

    Each search is an answer of its own, and with the lists it cost as much as the lists: at
    a million projects (10M rows) ~4.5 s and ~2.3 s of CPU where its own lookup took 10 ms,
    so a crowd of searches spent the warehouse on lists that do not change until the next
    publish (and ``/`` keeps them, cached, for that long).
    """
    query = params.text("q") or ""

    def render(con: Connection, ctx: api.Context) -> bytes:
        if query:
            found = data.search(con, canonicalize_name(query), 50)
            return _render(
                "home.html", title="Download statistics", ctx=ctx, query=query, found=found
            )
        filters = Filters(mirrors=False, ci=False)  # the pages' defaults
        tops = {
            label: data.top(con, days, ctx.end, 10, filters)
            for label, days in (("yesterday", 1), ("last 7 days", 7), ("last 30 days", 30))
        }
        trending = data.trending(con, ctx.end, ctx.trending_floor, 10, filters)
        return _render(
            "home.html",
            title="Download statistics",
            ctx=ctx,
            query="",
            tops=tops,
            trending=trending,
        )

    return render


def _links(base: str, current: dict[str, str], name: str, choices: tuple[str, ...]) -> list[Any]:
    """(label, URL or None for the current choice) for one control."""
    out = []
    for choice in choices:
        chosen = current[name] == choice
        query = urlencode({**current, name: choice})
        out.append((choice, None if chosen else f"{base}?{query}"))
    return out


def _toggle(base: str, current: dict[str, str], name: str) -> list[Any]:
    """Excluded / included links for a true/false parameter."""
    out = []
    for label, value in (("excluded", "false"), ("included", "true")):
        query = urlencode({**current, name: value})
        out.append((label, None if current[name] == value else f"{base}?{query}"))
    return out


def _project(name: str, params: Params) -> Render:
    span = params.choice("range", RANGES, "90")
    interval = params.choice("interval", INTERVALS, "day")
    mirrors = params.flag("mirrors", False)
    ci = params.flag("ci", False)
    today = params.flag("today", False)
    assert span is not None and interval is not None

    def render(con: Connection, ctx: api.Context) -> bytes:
        project = data.known(con, name)
        filters = Filters(mirrors=mirrors, ci=ci)
        summary = data.summary(con, project, ctx.end, filters, versions=False)
        end = ctx.end + timedelta(days=1) if today else ctx.end
        first = summary["first_day"] or end
        start = first if span == "all" else end - timedelta(days=int(span) - 1)
        found = data.breakdowns(
            con, project, ["", *BREAKDOWNS], interval, start, end, filters, CHART_LINES, TABLE_ROWS
        )
        periods = _periods(start, end, interval)
        counts = {when: count for when, _, count in found.periods[""]}
        main = {
            "rows": [(_label(when, interval), count) for when, _, count in found.periods[""]],
            "total": sum(counts.values()),
            "chart": _chart_json(periods, [("downloads", [counts.get(p, 0) for p in periods])]),
        }
        parts = []
        for field, label in BREAKDOWNS.items():
            by_time: dict[date, dict[Any, int]] = {}
            for when, value, count in found.periods[field]:
                by_time.setdefault(when, {})[value] = count
            leading = found.leading[field]
            lines = [
                (
                    "None" if value is None else str(value),
                    [by_time.get(t, {}).get(value, 0) for t in periods],
                )
                for value, _ in leading[:CHART_LINES]
            ]
            others = found.others.get(field)
            parts.append(
                {
                    "field": field,
                    "label": label,
                    "rows": leading,
                    "others": others,
                    "total": sum(count for _, count in leading) + (others[1] if others else 0),
                    "chart": _chart_json(periods, lines),
                }
            )
        current = {"range": span, "interval": interval, "mirrors": str(mirrors).lower()}
        current["ci"] = str(ci).lower()
        current["today"] = str(today).lower()
        base = f"/packages/{project}"
        controls = {
            "Range (days)": _links(base, current, "range", RANGES),
            "Interval": _links(base, current, "interval", INTERVALS),
            "Mirrors": _toggle(base, current, "mirrors"),
            "CI": _toggle(base, current, "ci"),
            "Today (partial)": _toggle(base, current, "today"),
        }
        return _render(
            "project.html",
            title=project,
            project=project,
            ctx=ctx,
            summary=summary,
            main=main,
            parts=parts,
            controls=controls,
            start=start,
            end=end,
            interval=interval,
            filters=filters,
        )

    return render


def _compare(params: Params) -> Render:
    raw = params.text("projects") or ""
    names = params.names("projects", 2, 5) if raw.strip() else []
    span = params.choice("range", RANGES, "90")
    interval = params.choice("interval", INTERVALS, "day")
    today = params.flag("today", False)
    assert span is not None and interval is not None

    def render(con: Connection, ctx: api.Context) -> bytes:
        filters = Filters(mirrors=False, ci=False)  # the pages' defaults
        projects = [data.known(con, name) for name in names]
        end = ctx.end + timedelta(days=1) if today else ctx.end
        start = end - timedelta(days=(3650 if span == "all" else int(span)) - 1)
        per_project = {}
        for project in projects:
            result = data.downloads(con, project, [interval], start, end, filters)
            per_project[project] = {_period_start(d): n for d, n in result.rows}
        times = _periods(start, end, interval)
        if span == "all":  # from the first download of any of them
            first = min((min(c) for c in per_project.values() if c), default=end)
            times = [t for t in times if t >= _period_start_of(first, interval)]
        lines = [(p, [per_project[p].get(t, 0) for t in times]) for p in projects]
        rows = [(t, [per_project[p].get(t, 0) for p in projects]) for t in times]
        rows = [(t, counts) for t, counts in rows if any(counts)]  # the table: busy periods
        totals = [sum(counts.values()) for counts in per_project.values()]
        current = {"projects": ",".join(projects), "range": span, "interval": interval}
        current["today"] = str(today).lower()
        return _render(
            "compare.html",
            title="Compare",
            ctx=ctx,
            projects=projects,
            raw=raw,
            rows=rows,
            totals=totals,
            chart_json=_chart_json(times, lines) if projects else None,
            controls={
                "Range (days)": _links("/compare", current, "range", RANGES),
                "Interval": _links("/compare", current, "interval", INTERVALS),
                "Today (partial)": _toggle("/compare", current, "today"),
            },
        )

    return render


__all__ = ["BadParameter", "NotFound", "error", "not_found", "route"]
