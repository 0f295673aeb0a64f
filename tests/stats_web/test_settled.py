"""A project's page, summary and all-time badge after a publish: the part over complete days
is kept when the publish touched none of them, and only today's part is read again."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from pythonhosted.stats_web import build_app
from pythonhosted.web.server import running
from support.metrics import sample
from support.stats_warehouse import TODAY, YESTERDAY, add_batch, build, event_lines, publish

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
