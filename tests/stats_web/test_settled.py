"""A project's page, summary and all-time badge after a publish: the part over complete days
is kept when the publish touched none of them, and only today's part is read again."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import duckdb
import httpx
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.linehaul.ingest import ingest_once
from pythonhosted.stats_web import build_app
from pythonhosted.storage import open_store
from pythonhosted.warehouse.rollups import LATE, LATE_PROJECTS
from pythonhosted.web.server import running
from support.linehaul_data import gz
from support.metrics import sample
from support.stats_data import line
from support.stats_warehouse import (
    TODAY,
    YESTERDAY,
    Warehouse,
    add_batch,
    at,
    build,
    event_lines,
    publish,
)

PAGE = "/packages/demo-pkg"
OTHER = "/packages/other"
SUMMARY = "/api/v1/projects/demo-pkg/summary"
TOTAL = "/api/v1/projects/demo-pkg/shields?period=total"
COMPUTED = "stats_web_answers_computed_total"
PARTS = "stats_web_parts_computed_total"
REUSED = "stats_web_parts_reused_total"


def _shown(page: httpx.Response, name: str) -> str:
    found = re.search(rf'<span class="value" id="{name}">([^<]*)</span>', page.text)
    assert found is not None, name
    return found[1]


def _counts(base: str) -> tuple[float, float, float]:
    return sample(base, COMPUTED), sample(base, PARTS), sample(base, REUSED)


def test_a_publish_of_todays_rows_reads_only_todays_part(tmp_path: Path) -> None:
    warehouse = build(tmp_path, event_lines())
    with running(build_app(warehouse.settings)) as base:
        page = httpx.get(base + PAGE)
        assert _counts(base) == (1, 2, 0)  # the page's summary and its breakdowns
        summary = httpx.get(base + SUMMARY).json()
        total = httpx.get(base + TOTAL).json()["message"]
        assert _counts(base) == (3, 4, 0)
        assert (_shown(page, "all-time"), _shown(page, "last-day")) == ("7", "2")
        assert (summary["total"], summary["last_day"], total) == (7, TODAY.isoformat(), "8")

        add_batch(warehouse, 1000, 4, day=TODAY)
        publish(warehouse)
        again = httpx.get(base + PAGE, headers={"if-none-match": page.headers["etag"]})
        assert again.status_code == 200
        assert again.headers["etag"] != page.headers["etag"]
        assert (_shown(again, "all-time"), _shown(again, "last-day")) == ("11", "2")
        assert httpx.get(base + SUMMARY).json()["total"] == 11
        assert httpx.get(base + TOTAL).json()["message"] == "12"
        # three answers computed again, their four settled parts kept: none read again
        assert _counts(base) == (6, 4, 4)
        assert httpx.get(base + PAGE).content == again.content  # cached now


def test_a_page_that_shows_today_counts_the_new_rows(tmp_path: Path) -> None:
    """With today's partial day the breakdowns read today: not kept, read again."""
    warehouse = build(tmp_path, event_lines())
    path = f"{PAGE}?today=true"
    with running(build_app(warehouse.settings)) as base:
        before = httpx.get(base + path)
        assert _shown(before, "all-time") == "7"
        assert '<span id="range-total">7</span>' in before.text
        add_batch(warehouse, 1000, 4, day=TODAY)
        publish(warehouse)
        after = httpx.get(base + path)
        assert _shown(after, "all-time") == "11"
        assert '<span id="range-total">11</span>' in after.text
        assert sample(base, PARTS) == 3  # the summary's part kept; the breakdowns twice


def test_a_late_batch_for_yesterday_reads_the_parts_again(tmp_path: Path) -> None:
    warehouse = build(tmp_path, event_lines())
    with running(build_app(warehouse.settings)) as base:
        page = httpx.get(base + PAGE)
        assert (_shown(page, "last-day"), _shown(page, "all-time")) == ("2", "7")
        add_batch(warehouse, 2000, 3, day=YESTERDAY)
        publish(warehouse)
        again = httpx.get(base + PAGE)
        assert (_shown(again, "last-day"), _shown(again, "all-time")) == ("5", "10")
        assert "by-version" in again.text and '<td>1.0</td><td class="n">5</td>' in again.text
        assert _counts(base) == (2, 4, 0)


def test_a_page_the_publish_did_not_touch_keeps_its_etag(tmp_path: Path) -> None:
    warehouse = build(tmp_path, event_lines())
    with running(build_app(warehouse.settings)) as base:
        page = httpx.get(base + OTHER)
        assert _shown(page, "all-time") == "2"
        add_batch(warehouse, 1000, 4, day=TODAY)
        publish(warehouse)
        again = httpx.get(base + OTHER, headers={"if-none-match": page.headers["etag"]})
        assert (again.status_code, again.headers["etag"]) == (304, page.headers["etag"])
        assert _counts(base) == (2, 2, 2)  # computed again from its kept parts alone


def _late_batch(warehouse: Warehouse, projects: list[str]) -> None:
    """A publish as in a day's first hours: one download of each of ``projects`` yesterday
    (a late batch), three of demo-pkg yesterday and one today."""
    add_batch(warehouse, 2000, 3, day=YESTERDAY)
    add_batch(warehouse, 3000, 1, day=TODAY)
    lines = [line(4000 + n, at(YESTERDAY, 16), project=p) for n, p in enumerate(projects)]
    store = open_store(warehouse.logs)
    asyncio.run(store.put("downloads/y/downloads-2026-01-01T00-00-00.000-late-x.log.gz", gz(lines)))
    asyncio.run(ingest_once(store, open_store(warehouse.results), lease_timeout=60))
    publish(warehouse)


def _recent_day(warehouse: Warehouse, base: str, project: str) -> tuple[int, int]:
    """Yesterday's downloads of ``project`` by the CLI and by the API (pypistats' rule)."""
    out = CliRunner().invoke(
        main,
        [
            "stats",
            project,
            *("--start", YESTERDAY.isoformat(), "--end", YESTERDAY.isoformat()),
            *("--format", "json", "--warehouse", f"duckdb://{warehouse.path}"),
        ],
    )
    assert out.exit_code == 0, out.output
    api = httpx.get(f"{base}/api/packages/{project}/recent").json()["data"]["last_day"]
    return json.loads(out.stdout)["total"], api


def test_a_late_batch_keeps_the_parts_of_the_projects_it_did_not_touch(tmp_path: Path) -> None:
    """A publish that brings yesterday's rows of demo-pkg (and a few others) and today's:
    demo-pkg's page and summary show the new numbers; other's page is computed again from
    its kept parts (it shows today), with its ETag."""
    warehouse = build(tmp_path, event_lines())
    with running(build_app(warehouse.settings)) as base:
        other = httpx.get(base + OTHER)
        page = httpx.get(base + PAGE)
        summary = httpx.get(base + SUMMARY).json()
        assert _counts(base) == (3, 5, 0)
        assert (summary["total"], summary["last_day_downloads"]) == (7, 2)
        _late_batch(warehouse, ["third", "Fourth.Pkg"])
        again = httpx.get(base + OTHER, headers={"if-none-match": other.headers["etag"]})
        assert (again.status_code, again.headers["etag"]) == (304, other.headers["etag"])
        assert _counts(base) == (4, 5, 2)  # other's two parts kept, none computed
        page = httpx.get(base + PAGE, headers={"if-none-match": page.headers["etag"]})
        assert page.status_code == 200
        assert (_shown(page, "last-day"), _shown(page, "all-time")) == ("5", "11")
        summary = httpx.get(base + SUMMARY).json()
        assert (summary["total"], summary["last_day_downloads"]) == (11, 5)
        assert _counts(base) == (6, 8, 2)  # demo-pkg's three parts computed again
        assert _recent_day(warehouse, base, "demo-pkg") == (6, 6)
        assert _recent_day(warehouse, base, "other") == (1, 1)


def test_a_late_batch_past_the_bound_recomputes_every_projects_parts(tmp_path: Path) -> None:
    """Past :data:`~pythonhosted.warehouse.rollups.LATE_PROJECTS` projects the publish
    records none of them: it touched yesterday for every project, as before the record."""
    warehouse = build(tmp_path, event_lines())
    with running(build_app(warehouse.settings)) as base:
        other = httpx.get(base + OTHER)
        assert _counts(base) == (1, 2, 0)
        _late_batch(warehouse, [f"late-{n}" for n in range(LATE_PROJECTS)])
        again = httpx.get(base + OTHER, headers={"if-none-match": other.headers["etag"]})
        assert (again.status_code, again.headers["etag"]) == (304, other.headers["etag"])
        assert _counts(base) == (2, 4, 0)  # demo-pkg and 1,000 more: other's parts read again


def test_a_warehouse_without_the_late_record_recomputes_every_projects_parts(
    tmp_path: Path,
) -> None:
    """A warehouse whose versions have no late record (an older release's, or one made
    before it: no table) opens and answers, as before the record."""
    warehouse = build(tmp_path, event_lines())
    with running(build_app(warehouse.settings)) as base:
        other = httpx.get(base + OTHER)
        _late_batch(warehouse, ["third"])
        con = duckdb.connect(str(warehouse.path))
        con.execute(f"DROP TABLE {LATE}")
        con.close()
        again = httpx.get(base + OTHER, headers={"if-none-match": other.headers["etag"]})
        assert (again.status_code, again.headers["etag"]) == (304, other.headers["etag"])
        assert _counts(base) == (2, 4, 0)
        assert _shown(httpx.get(base + PAGE), "all-time") == "11"
