"""Answers a publish did not change stay cached, ETag and all; those it changed never outlive
it: a day they read, the watermark or the latest release they show, the names behind a 404."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from pythonhosted.files.upload import upload
from pythonhosted.linehaul.publish import publish_with
from pythonhosted.samples import build_wheel
from pythonhosted.stats_web import build_app
from pythonhosted.stats_web.api import moment
from pythonhosted.storage import open_store
from pythonhosted.web.server import running
from support.metrics import sample
from support.stats_warehouse import TODAY, YESTERDAY, add_batch, build, d, event_lines, publish

RECENT = "/api/packages/demo-pkg/recent"
OVERALL = "/api/packages/demo-pkg/overall"
BADGE = "/badge/demo-pkg.svg"
COMPUTED = "stats_web_answers_computed_total"
KEPT = "stats_web_answers_kept_total"


def _revalidated(base: str, path: str, before: httpx.Response) -> httpx.Response:
    return httpx.get(base + path, headers={"if-none-match": before.headers["etag"]})


def _on(rows: list[dict[str, object]], day: object, category: str) -> object:
    return [r["downloads"] for r in rows if r["date"] == str(day) and r["category"] == category]


def test_answers_over_complete_days_outlive_a_publish_of_todays_rows(tmp_path: Path) -> None:
    warehouse = build(tmp_path, event_lines())
    today = f"{OVERALL}?end={TODAY}"
    total = "/api/v1/projects/demo-pkg/shields?period=total"
    with running(build_app(warehouse.settings)) as base:
        kept = {path: httpx.get(base + path) for path in (RECENT, OVERALL, BADGE)}
        assert kept[RECENT].json()["data"] == {"last_day": 3, "last_week": 5, "last_month": 6}
        before_today = httpx.get(base + today).json()["data"]
        before_total = httpx.get(base + total).json()["message"]
        computed = sample(base, COMPUTED)
        add_batch(warehouse, 1000, 4, day=TODAY)
        publish(warehouse)
        for path, before in kept.items():
            again = _revalidated(base, path, before)
            assert (again.status_code, again.headers["etag"]) == (304, before.headers["etag"])
            assert httpx.get(base + path).content == before.content
        assert sample(base, COMPUTED) == computed  # none of them computed again
        assert sample(base, KEPT) == 3
        # What reads today changed at once.
        after_today = httpx.get(base + today).json()["data"]
        assert _on(before_today, TODAY, "with_mirrors") == [1]
        assert _on(after_today, TODAY, "with_mirrors") == [5]
        assert (before_total, httpx.get(base + total).json()["message"]) == ("8", "12")


def test_a_late_batch_for_an_old_day_changes_the_answers_over_that_day(tmp_path: Path) -> None:
    warehouse = build(tmp_path, event_lines())
    older = f"{OVERALL}?end={d(20)}"  # ends before the late day: kept
    with running(build_app(warehouse.settings)) as base:
        before = {path: httpx.get(base + path) for path in (RECENT, OVERALL, older)}
        computed = sample(base, COMPUTED)
        add_batch(warehouse, 2000, 3, day=d(10))
        publish(warehouse)
        recent = _revalidated(base, RECENT, before[RECENT])
        assert recent.status_code == 200
        assert recent.json()["data"] == {"last_day": 3, "last_week": 5, "last_month": 9}
        overall = _revalidated(base, OVERALL, before[OVERALL])
        assert overall.status_code == 200
        assert _on(before[OVERALL].json()["data"], d(10), "with_mirrors") == [2]
        assert _on(overall.json()["data"], d(10), "with_mirrors") == [5]
        assert _revalidated(base, older, before[older]).status_code == 304
        assert sample(base, COMPUTED) == computed + 2  # recent and overall, not the older
        assert sample(base, KEPT) == 1


def test_the_watermark_an_answer_shows_changes_with_the_publish(tmp_path: Path) -> None:
    """``top`` reads complete days only, but shows the watermark, which a publish of a new
    hour's batch moves."""
    warehouse = build(tmp_path, event_lines())
    top = "/api/v1/top"
    hour = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    with running(build_app(warehouse.settings)) as base:
        before = httpx.get(base + top).json()
        computed = sample(base, COMPUTED)
        add_batch(warehouse, 3000, 2, day=TODAY, batch_hour=hour)
        publish(warehouse)
        after = httpx.get(base + top).json()
        assert after["projects"] == before["projects"]
        assert before["complete_through"] < after["complete_through"]
        assert after["complete_through"] == moment(hour + timedelta(hours=1))
        assert sample(base, COMPUTED) == computed + 1


def test_an_upload_changes_the_latest_release_and_keeps_the_counts(tmp_path: Path) -> None:
    """A publish of uploads alone touches no day: ``recent`` stays; the summary, which shows
    the latest release, changes."""
    warehouse = build(tmp_path, event_lines())
    summary = "/api/v1/projects/demo-pkg/summary"
    files = f"file://{tmp_path}/files"
    with running(build_app(warehouse.settings)) as base:
        recent = httpx.get(base + RECENT)
        assert httpx.get(base + summary).json()["latest_version"] == "2.0"
        computed = sample(base, COMPUTED)
        asyncio.run(upload(open_store(files), *build_wheel("demo-pkg", "3.0", summary="New")))
        asyncio.run(
            publish_with(
                open_store(warehouse.results),
                f"duckdb://{warehouse.path}",
                batch_files=100,
                uploads=open_store(files),
            )
        )
        assert _revalidated(base, RECENT, recent).status_code == 304
        found = httpx.get(base + summary).json()
        assert (found["latest_version"], found["summary"]) == ("3.0", "New")
        assert sample(base, COMPUTED) == computed + 1  # the summary alone
        assert sample(base, KEPT) == 1


def test_an_unknown_project_is_known_right_after_the_publish_of_its_first_download(
    tmp_path: Path,
) -> None:
    """Its 404 read no day, but it shows the names known, which the publish changed."""
    warehouse = build(tmp_path, event_lines())
    path = "/api/packages/brand-new/recent"
    with running(build_app(warehouse.settings)) as base:
        assert httpx.get(base + path).status_code == 404
        add_batch(warehouse, 4000, 2, day=YESTERDAY, project="brand-new")
        publish(warehouse)
        found = httpx.get(base + path)
        assert found.status_code == 200
        assert found.json()["data"] == {"last_day": 2, "last_week": 2, "last_month": 2}


def test_pages_outlive_a_publish_that_leaves_the_watermark_and_not_one_that_moves_it(
    tmp_path: Path,
) -> None:
    """The home and compare pages read complete days and show the watermark in their banner:
    a publish of today's rows from a batch of an hour loaded before keeps them, ETag and all;
    one that loads the next hour's batch moves the watermark, and they show the new one."""
    hour = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    warehouse = build(tmp_path, event_lines(), hour=hour - timedelta(hours=2))
    pages = ("/", "/compare?projects=demo-pkg,other")
    shown = '<time datetime="{}Z">'
    with running(build_app(warehouse.settings)) as base:
        before = {path: httpx.get(base + path) for path in pages}
        for found in before.values():
            assert shown.format((hour - timedelta(hours=1)).isoformat()) in found.text
        computed = sample(base, COMPUTED)
        add_batch(
            warehouse, 5000, 3, day=TODAY, batch_hour=hour - timedelta(hours=2), project="other"
        )
        publish(warehouse)
        for path, found in before.items():
            again = _revalidated(base, path, found)
            assert (again.status_code, again.headers["etag"]) == (304, found.headers["etag"])
        assert sample(base, COMPUTED) == computed
        assert sample(base, KEPT) == 2
        add_batch(warehouse, 6000, 3, day=TODAY, batch_hour=hour, project="other")
        publish(warehouse)
        for path, found in before.items():
            moved = _revalidated(base, path, found)
            assert moved.status_code == 200
            assert moved.headers["etag"] != found.headers["etag"]
            assert shown.format((hour + timedelta(hours=1)).isoformat()) in moved.text
        assert sample(base, COMPUTED) == computed + 2
