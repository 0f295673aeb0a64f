"""The JSON API over a warehouse built through ingest and publish: exact answers, the
pypistats client, validators, caching headers, CORS, errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.dom import minidom

import aiohttp
import httpx
import pytest

from pythonhosted.stats_web import build_app
from pythonhosted.stats_web.data import categories
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.stats import SYSTEMS, Filters
from pythonhosted.web.server import running
from support.stats_data import line, pip_agent
from support.stats_warehouse import Warehouse, admitting, at, build, d

DEMO = "demo-pkg"


def _get(base: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(base + path, headers=headers)


def _rows(*rows: tuple[int, str, int]) -> list[dict[str, Any]]:
    return [{"category": c, "date": d(ago).isoformat(), "downloads": n} for ago, c, n in rows]


# What pypistats.org answers for EVENTS, by its rules (mirrors out except in overall, CI in,
# days without downloads absent, rows by date then category), written out by hand.
PYPISTATS: dict[str, Any] = {
    "recent": {
        "data": {"last_day": 3, "last_week": 5, "last_month": 6},
        "package": DEMO,
        "type": "recent_downloads",
    },
    "recent?period=day": {"data": {"last_day": 3}, "package": DEMO, "type": "recent_downloads"},
    "recent?period=week": {"data": {"last_week": 5}, "package": DEMO, "type": "recent_downloads"},
    "overall": {
        "data": _rows(
            (40, "with_mirrors", 1),
            (40, "without_mirrors", 1),
            (10, "with_mirrors", 2),
            (10, "without_mirrors", 1),
            (2, "with_mirrors", 2),
            (2, "without_mirrors", 2),
            (1, "with_mirrors", 4),
            (1, "without_mirrors", 3),
        ),
        "package": DEMO,
        "type": "overall_downloads",
    },
    "overall?mirrors=true": {
        "data": _rows(
            (40, "with_mirrors", 1),
            (10, "with_mirrors", 2),
            (2, "with_mirrors", 2),
            (1, "with_mirrors", 4),
        ),
        "package": DEMO,
        "type": "overall_downloads",
    },
    "overall?mirrors=false": {
        "data": _rows(
            (40, "without_mirrors", 1),
            (10, "without_mirrors", 1),
            (2, "without_mirrors", 2),
            (1, "without_mirrors", 3),
        ),
        "package": DEMO,
        "type": "overall_downloads",
    },
    "python_major": {
        "data": _rows((40, "null", 1), (10, "2", 1), (2, "3", 2), (1, "3", 3)),
        "package": DEMO,
        "type": "python_major_downloads",
    },
    "python_major?version=3": {
        "data": _rows((2, "3", 2), (1, "3", 3)),
        "package": DEMO,
        "type": "python_major_downloads",
    },
    "python_minor": {
        "data": _rows((40, "null", 1), (10, "2.7", 1), (2, "3.11", 2), (1, "3.12", 3)),
        "package": DEMO,
        "type": "python_minor_downloads",
    },
    "python_minor?version=3.12": {
        "data": _rows((1, "3.12", 3)),
        "package": DEMO,
        "type": "python_minor_downloads",
    },
    "system": {
        "data": _rows((40, "other", 1), (10, "Darwin", 1), (2, "Windows", 2), (1, "Linux", 3)),
        "package": DEMO,
        "type": "system_downloads",
    },
    "system?os=linux": {
        "data": _rows((1, "Linux", 3)),
        "package": DEMO,
        "type": "system_downloads",
    },
    "system?os=other": {
        "data": _rows((40, "other", 1)),
        "package": DEMO,
        "type": "system_downloads",
    },
}


@pytest.mark.parametrize("route", sorted(PYPISTATS))
def test_pypistats_routes_field_by_field(base: str, route: str) -> None:
    answer = _get(base, f"/api/packages/Demo_Pkg/{route}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == PYPISTATS[route]


def test_pypistats_ranges_are_not_cut_at_180_days(base: str) -> None:
    start, end = d(10).isoformat(), d(2).isoformat()
    answer = _get(base, f"/api/packages/{DEMO}/python_minor?start={start}&end={end}").json()
    assert answer["data"] == _rows((10, "2.7", 1), (2, "3.11", 2))


@pytest.fixture(scope="module")
def pypistats_org() -> Iterator[str]:
    """A stand-in for pypistats.org (which cannot be reached from here) serving the answers
    it would give for the same data, written out above."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            query = query.lstrip("&")  # the client sends "?&period=week"
            route = path.rsplit("/", 1)[1] + (f"?{query}" if query else "")
            body = json.dumps(PYPISTATS[route]).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/"
    server.shutdown()


CLIENT = """
import sys, pypistats
from pypistats import cli
pypistats.BASE_URL = sys.argv[1]
sys.argv = ["pypistats", *sys.argv[2:]]
cli.main()
"""


def _pypistats(base_url: str, cache: Path, *args: str) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "NO_COLOR": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, base_url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["recent", "demo-pkg"],
        ["recent", "demo-pkg", "--period", "week"],
        ["overall", "demo-pkg", "--format", "markdown"],
        ["overall", "demo-pkg", "--mirrors", "without", "--daily"],
        ["python_major", "demo-pkg", "--format", "tsv"],
        ["python_minor", "demo-pkg", "--format", "markdown", "--color", "no"],
        ["python_minor", "demo-pkg", "--version", "3.12", "--json"],
        ["system", "demo-pkg", "--color", "no"],
        ["system", "demo-pkg", "--os", "linux", "--color", "no"],
    ],
)
def test_the_pypistats_client_prints_the_same_tables(
    base: str, pypistats_org: str, tmp_path: Path, args: list[str]
) -> None:
    ours = _pypistats(base + "/api/", tmp_path / "ours", *args)
    reference = _pypistats(pypistats_org, tmp_path / "reference", *args)
    assert ours == reference
    assert ours.strip()


def test_the_pypistats_client_table_reads_as_expected(base: str, tmp_path: Path) -> None:
    out = _pypistats(base + "/api/", tmp_path, "python_minor", DEMO, "-f", "md", "-c", "no")
    assert out.startswith(
        "| category | percent | downloads |\n"
        "| :--------|-------: |---------: |\n"
        "| 3.12     |  42.86% |         3 |\n"
        "| 3.11     |  28.57% |         2 |\n"
    )
    assert "| Total    |         |         7 |" in out
    assert f"Date range: {d(40).isoformat()} - {d(1).isoformat()}" in out


def test_our_routes(base: str) -> None:
    summary = _get(base, f"/api/v1/projects/{DEMO}/summary?ci=true").json()
    assert {k: summary[k] for k in ("project", "total", "first_day", "last_day")} == {
        "project": DEMO,
        "total": 8,  # every non-mirror download, today's and CI's included
        "first_day": d(40).isoformat(),
        "last_day": d(0).isoformat(),
    }
    assert (summary["last_day_downloads"], summary["last_week_downloads"]) == (3, 5)
    assert summary["top_versions"] == [
        {"version": "1.1", "downloads": 3},
        {"version": "1.0", "downloads": 2},
        {"version": "2.0", "downloads": 1},
    ]
    assert (summary["latest_version"], summary["summary"]) == ("2.0", "The demo package")
    by = _get(
        base,
        f"/api/v1/projects/{DEMO}/downloads?by=installer,country&start={d(2)}&end={d(1)}"
        "&mirrors=true",
    ).json()
    assert by["rows"] == [
        {"date": d(2).isoformat(), "installer": "pip", "country": "FR", "downloads": 2},
        {"date": d(1).isoformat(), "installer": "bandersnatch", "country": "US", "downloads": 1},
        {"date": d(1).isoformat(), "installer": "pip", "country": "DE", "downloads": 1},
        {"date": d(1).isoformat(), "installer": "pip", "country": "US", "downloads": 1},
    ]
    assert (by["total"], by["mirrors"], by["ci"]) == (5, True, False)
    weekly = _get(base, f"/api/v1/projects/{DEMO}/downloads?interval=month&start={d(40)}").json()
    assert sum(row["downloads"] for row in weekly["rows"]) == weekly["total"] == 6
    top = _get(base, "/api/v1/top?period=week").json()
    assert top["projects"] == [
        {"project": DEMO, "downloads": 4},
        {"project": "other", "downloads": 1},
    ]
    compare = _get(base, "/api/v1/compare?projects=demo-pkg,Other&ci=true").json()
    assert {name: p["total"] for name, p in compare["projects"].items()} == {
        DEMO: 6,
        "other": 1,
    }
    search = _get(base, "/api/v1/search?q=Demo").json()
    assert search == {"q": "demo", "projects": [DEMO]}
    coverage = _get(base, "/api/v1/coverage?by=day&days=1").json()
    assert coverage["by"] == "day" and coverage["rows"][0]["status"] == "pending"
    assert coverage["watermark"] and by["complete_through"] == coverage["watermark"]
    assert _get(base, "/api/v1/trending").json()["projects"] == []


def _typos(name: str) -> list[str]:
    """Each one-letter substitution of ``name`` (its letters and digits): unknown names."""
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    return [
        name[:at] + letter + name[at + 1 :]
        for at in range(len(name))
        if name[at] != "-"
        for letter in letters
        if letter != name[at]
    ]


async def _flood_with_health(base: str, paths: list[str]) -> tuple[list[tuple[int, Any]], int]:
    """Every path asked at once, one connection each, while ``/_health`` is asked over a
    connection of its own; the answers, and how many health answers came before the
    flood's last."""
    done = asyncio.Event()
    answered = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(path: str) -> tuple[int, Any]:
            async with session.get(base + path) as response:
                return response.status, await response.json()

        async def health() -> None:
            nonlocal answered
            async with aiohttp.ClientSession() as alone:
                while not done.is_set():
                    async with alone.get(base + "/_health") as response:
                        assert response.status == 200
                    if not done.is_set():
                        answered += 1
                    await asyncio.sleep(0.01)

        prober = asyncio.create_task(health())
        answers = await asyncio.gather(*(one(path) for path in paths))
        done.set()
        await prober
    return list(answers), answered


def test_a_flood_of_unknown_names_is_answered_while_health_stays_up(
    warehouse: Warehouse,
) -> None:
    """1,000 distinct unknown names at once (typos from a badge service, or hostile): each a
    404 with its JSON error, the typos of a project with it as the suggestion, while the
    service shell's own route answers during the flood (the lookups run off the loop).
    With room for all 1,000 at once: past ``max_pending`` they would be shed
    (test_shedding.py)."""
    typos = _typos(DEMO)[:500]
    others = [f"no-such-{n}-anywhere" for n in range(1000 - len(typos))]
    paths = [f"/api/packages/{name}/recent" for name in [*typos, *others]]
    with running(build_app(admitting(warehouse.settings, len(paths)))) as base:
        answers, health = asyncio.run(_flood_with_health(base, paths))
    hint = f" (did you mean {DEMO}?)"
    expected = [
        (404, {"error": f"no downloads were recorded for {name!r}{end}", "suggestions": close})
        for names, end, close in ((typos, hint, [DEMO]), (others, "", []))
        for name in names
    ]
    assert answers == expected
    assert health >= 1


def test_unknown_projects_and_bad_parameters(base: str) -> None:
    missing = _get(base, "/api/packages/no-such-thing/recent")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "no downloads were recorded for 'no-such-thing'",
        "suggestions": [],
    }
    close = _get(base, "/api/v1/projects/demo-pk/summary").json()
    assert close["suggestions"] == [DEMO]
    for path, parameter in [
        (f"/api/packages/{DEMO}/recent?period=year", "period"),
        (f"/api/packages/{DEMO}/overall?mirrors=maybe", "mirrors"),
        (f"/api/packages/{DEMO}/python_major?version=three", "version"),
        (f"/api/packages/{DEMO}/python_minor?version=3", "version"),
        (f"/api/packages/{DEMO}/system?os=beos", "os"),
        (f"/api/packages/{DEMO}/overall?start=yesterday", "start"),
        (f"/api/packages/{DEMO}/overall?start=2024-02-02&end=2024-02-01", "start"),
        (f"/api/v1/projects/{DEMO}/downloads?by=colour", "by"),
        (f"/api/v1/projects/{DEMO}/downloads?by=installer,installer", "by"),
        (f"/api/v1/projects/{DEMO}/downloads?interval=hour", "interval"),
        (f"/api/v1/projects/{DEMO}/summary?ci=yes", "ci"),
        ("/api/v1/compare?projects=a", "projects"),
        ("/api/v1/compare?projects=a,b,c,d,e,f", "projects"),
        ("/api/v1/top?limit=0", "limit"),
        ("/api/v1/top?limit=" + "9" * 5_000, "limit"),
        ("/api/v1/top?limit=%C2%B2", "limit"),
        ("/api/v1/top?period=year", "period"),
        ("/api/v1/coverage?by=minute", "by"),
        (f"/badge/{DEMO}.svg?color=notacolour", "color"),
        (f"/badge/{DEMO}.svg?style=3d", "style"),
        (f"/api/v1/projects/{DEMO}/shields?period=hour", "period"),
    ]:
        answer = _get(base, path)
        assert answer.status_code == 400, path
        assert answer.json()["parameter"] == parameter, path
        assert f"'{parameter}'" in answer.json()["error"]
    assert _get(base, "/api/v2/nothing").status_code == 404
    assert _get(base, "/api/v1/compare?projects=demo-pkg,nope").status_code == 404


def test_badge_labels_that_svg_cannot_carry_are_a_400(base: str) -> None:
    """badgepy parses the SVG it draws: a control character or U+FFFE in the label was a
    500. Markup and any other character are drawn, escaped, in a well-formed SVG."""
    for label in ("a%00b", "a%01b", "a%09b", "%7F", "a%C2%85b", "%EF%BF%BE", "%EF%BF%BF"):
        for path in (f"/badge/{DEMO}.svg", f"/api/v1/projects/{DEMO}/shields"):
            answer = _get(base, f"{path}?label={label}")
            assert (answer.status_code, answer.json()) == (
                400,
                {"error": "bad parameter 'label': no control characters", "parameter": "label"},
            ), (path, label)
    for label in ("<script>&\"'", "\u202e\U0001f600 \u2028\ue000", "\U0010fffd" * 60):
        answer = httpx.get(f"{base}/badge/{DEMO}.svg", params={"label": label})
        assert answer.status_code == 200, label
        texts = minidom.parseString(answer.content).getElementsByTagName("text")
        assert texts[0].firstChild.data == label  # type: ignore[union-attr]


def test_a_breakdown_answer_holds_at_most_limit_rows(base: str) -> None:
    """Its first ``limit`` rows (10,000 unless asked for fewer), ``truncated`` when there were
    more; the total counts them all. Every row used to be in it: a breakdown by fields of
    many values over a long range was millions of rows, read and written out at once."""
    path = f"/api/v1/projects/{DEMO}/downloads?by=version,country&start={d(40)}&mirrors=true"
    whole = _get(base, path).json()
    assert (len(whole["rows"]), whole["total"], whole["truncated"]) == (6, 8, False)
    first = _get(base, path + "&limit=3").json()
    assert (first["rows"], first["total"], first["truncated"]) == (whole["rows"][:3], 8, True)
    assert _get(base, path + "&limit=6").json()["truncated"] is False
    for limit in ("0", "10001"):
        answer = _get(base, f"{path}&limit={limit}")
        assert (answer.status_code, answer.json()["parameter"]) == (400, "limit")


def test_pypistats_breakdowns_name_at_most_30_categories(tmp_path: Path) -> None:
    """Python versions come from user agents: 3.0 to 3.39, 3.N downloaded N + 1 times on
    one day, 3.0 on another too. The 30 biggest are named; the ten smallest (3.0-3.9) are
    one "other" a day. A category asked for by name is still answered alone."""
    lines = [
        line(serial, at(d(2)), project="many", agent=pip_agent(f"3.{minor}.0", "Linux", None))
        for serial, minor in enumerate(m for m in range(40) for _ in range(m + 1))
    ]
    lines.append(
        line(len(lines), at(d(3)), project="many", agent=pip_agent("3.0.1", "Linux", None))
    )
    warehouse = build(tmp_path, lines)
    with running(build_app(warehouse.settings)) as base:
        rows = _get(base, "/api/packages/many/python_minor").json()["data"]
        alone = _get(base, "/api/packages/many/python_minor?version=3.5").json()["data"]
        major = _get(base, "/api/packages/many/python_major").json()["data"]
    assert rows == [
        {"category": "other", "date": d(3).isoformat(), "downloads": 1},
        *(
            {"category": category, "date": d(2).isoformat(), "downloads": downloads}
            for category, downloads in sorted(
                [(f"3.{m}", m + 1) for m in range(10, 40)] + [("other", 55)]
            )
        ),
    ]
    assert alone == [{"category": "3.5", "date": d(2).isoformat(), "downloads": 6}]
    assert major == [
        {"category": "3", "date": d(3).isoformat(), "downloads": 1},
        {"category": "3", "date": d(2).isoformat(), "downloads": 820},
    ]


def _folded_in_python(
    events: list[tuple[date, str | None, str | None]], category: Callable[..., str], wanted: str
) -> list[dict[str, Any]]:
    """What the API answered when the worker folded every (day, value) row itself: its
    categories, those past the 30 biggest (equal totals by category) one "other" a day."""
    per_day: Counter[tuple[date, str]] = Counter()
    for day, python, system in events:
        per_day[day, category(python, system)] += 1
    rows = [(d, c, n) for (d, c), n in per_day.items() if not wanted or c.lower() == wanted]
    totals: Counter[str] = Counter()
    for _, name, downloads in rows:
        totals[name] += downloads
    if not wanted and len(totals) > 30:
        named = set(sorted(totals, key=lambda name: (-totals[name], name))[:30])
        folded: Counter[tuple[date, str]] = Counter()
        for day, name, downloads in rows:
            folded[day, name if name in named else "other"] += downloads
        rows = [(d, c, n) for (d, c), n in folded.items()]
    return [
        {"category": c, "date": d.isoformat(), "downloads": n}
        for d, c, n in sorted(rows, key=lambda row: (row[0], row[1]))
    ]


def test_pypistats_breakdowns_are_folded_in_the_warehouse(tmp_path: Path) -> None:
    """70 Python versions (and none) over 12 days with many equal totals, systems past the
    three named (one of them called "other", one missing): the answers are those of folding
    every (day, value) row in the worker, but the warehouse hands over at most 31 categories
    a day where the worker read every (day, value) row of the range (O(rows) in memory)."""
    systems = ["Linux", "Windows", "Darwin", "FreeBSD", "other", None, "Ünïcode"]
    events: list[tuple[date, str | None, str | None]] = []
    for ago in range(1, 13):
        for minor in range(70):
            python = None if minor == 69 else f"{3 - minor % 2}.{minor}"
            for _ in range((minor + ago) % 3 + (minor < 4)):
                events.append((d(ago), python, systems[len(events) % len(systems)]))
    lines = [
        line(serial, at(day), project="many", agent=pip_agent(python and f"{python}.1", os, None))
        for serial, (day, python, os) in enumerate(events)
    ]
    warehouse = build(tmp_path, lines)
    routes: dict[str, Callable[[str | None, str | None], str]] = {
        "python_minor": lambda python, _: python or "null",
        "python_major": lambda python, _: python.split(".")[0] if python else "null",
        "system": lambda _, os: "null" if os is None else os if os in SYSTEMS else "other",
    }
    questions = [
        ("python_minor", ""),
        ("python_minor", "3.4"),
        ("python_minor", "null"),
        ("python_major", ""),
        ("python_major", "2"),
        ("system", ""),
        ("system", "other"),
        ("system", "null"),
    ]
    with running(build_app(warehouse.settings)) as base:
        for route, wanted in questions:
            query = f"?{'os' if route == 'system' else 'version'}={wanted}" if wanted else ""
            found = _get(base, f"/api/packages/many/{route}{query}").json()["data"]
            assert found == _folded_in_python(events, routes[route], wanted), (route, wanted)
    with reading(warehouse.path) as con:
        rows = categories(con, "many", "python", "value", None, d(1), Filters(), named=30)
    expected = _folded_in_python(events, routes["python_minor"], "")
    assert sorted(rows) == [
        (date.fromisoformat(row["date"]), row["category"], row["downloads"]) for row in expected
    ]
    assert max(Counter(day for day, _, _ in rows).values()) == 23  # of 31 at most
    assert len(rows) == 268 < len({(day, python) for day, python, _ in events}) == 576


def test_days_at_the_ends_of_the_calendar_are_a_400(base: str) -> None:
    """A day near Python's date.min or date.max overflowed the range's arithmetic (30 days
    before the end; the day after it for a breakdown of the rows): a 500."""
    downloads = f"/api/v1/projects/{DEMO}/downloads"
    for path, parameter, day in [
        (f"{downloads}?end=0001-01-01", "end", "0001-01-01"),
        (f"{downloads}?by=version,country&end=9999-12-31", "end", "9999-12-31"),
        (f"{downloads}?start=1899-12-31", "start", "1899-12-31"),
        ("/api/v1/compare?projects=demo-pkg,other&end=0001-01-02", "end", "0001-01-02"),
        (f"/api/packages/{DEMO}/overall?end=2200-01-01", "end", "2200-01-01"),
    ]:
        answer = _get(base, path)
        error = f"bad parameter {parameter!r}: {day} is not between 1900-01-01 and 2199-12-31"
        assert (answer.status_code, answer.json()) == (
            400,
            {"error": error, "parameter": parameter},
        ), path
    edges = _get(
        base,
        f"/api/v1/projects/{DEMO}/downloads?by=version,country&start=1900-01-01&end=2199-12-31",
    )
    assert (edges.status_code, edges.json()["total"]) == (200, 7)  # today's too


def test_validators_and_headers(base: str) -> None:
    first = _get(base, f"/api/packages/{DEMO}/recent")
    etag = first.headers["etag"]
    assert first.headers["cache-control"].startswith("public, max-age=")
    assert 1 <= int(first.headers["cache-control"].rsplit("=", 1)[1]) <= 900
    assert first.headers["access-control-allow-origin"] == "*"
    assert "script-src 'self'" in first.headers["content-security-policy"]
    assert first.headers["x-content-type-options"] == "nosniff"
    assert "ratelimit" not in first.headers  # loopback has no budget by default
    again = _get(base, f"/api/packages/{DEMO}/recent", **{"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    other = _get(base, f"/api/packages/{DEMO}/recent", **{"if-none-match": '"nope"'})
    assert other.status_code == 200
    head = httpx.head(base + f"/api/packages/{DEMO}/recent")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == first.headers["content-length"]
    preflight = httpx.options(base + f"/api/packages/{DEMO}/recent")
    assert preflight.status_code == 204
    assert "If-None-Match" in preflight.headers["access-control-allow-headers"]
    assert httpx.post(base + "/api/v1/top").status_code == 405
    for path in ("/", "/static/charts.js", "/nowhere", "/_health", "/api/v1/top"):
        answer = _get(base, path)
        assert "content-security-policy" in answer.headers, path
        assert answer.headers["x-frame-options"] == "deny", path


def test_badges(base: str) -> None:
    svg = _get(base, f"/badge/{DEMO}.svg?period=week&label=installs&color=green")
    assert svg.status_code == 200
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.text.startswith("<svg") and ">installs<" in svg.text and ">5/week<" in svg.text
    assert "#97ca00" in svg.text.lower()
    square = _get(base, f"/badge/{DEMO}.svg?period=total&style=flat-square&color=ff0000")
    assert ">8<" in square.text and "#ff0000" in square.text.lower()
    assert "linearGradient" not in square.text  # flat-square has no gradient
    shields = _get(base, f"/api/v1/projects/{DEMO}/shields?period=month").json()
    assert shields == {
        "schemaVersion": 1,
        "label": "downloads",
        "message": "6/month",
        "color": "007ec6",
    }
    assert _get(base, "/badge/no-such-thing.svg").status_code == 404


def test_pages_are_found_or_not(base: str, warehouse: Warehouse) -> None:
    page = _get(base, "/packages/Demo_Pkg")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<span class="value" id="last-week">4</span>' in page.text  # CI left out
    with_ci = _get(base, "/packages/demo-pkg?ci=true&mirrors=true").text
    assert '<span class="value" id="last-week">6</span>' in with_ci
    missing = _get(base, "/packages/demo-pk")
    assert missing.status_code == 404 and 'href="/packages/demo-pkg"' in missing.text
    assert _get(base, "/packages/demo-pkg?range=7").status_code == 400
    assert _get(base, "/?q=de").text.count('href="/packages/demo-pkg"') >= 1
