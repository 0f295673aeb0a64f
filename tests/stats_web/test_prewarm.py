"""The pre-warm after a publish: the most downloaded projects' answers cached before anyone
asks, equal to answers computed on request, never stale past a publish, bounded, and behind
visitors' answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from pathlib import Path

import httpx
import pytest

from pythonhosted.stats_web import build_app
from pythonhosted.stats_web import prewarm as prewarm_module
from pythonhosted.stats_web.answers import Answer, AnswerCache
from pythonhosted.stats_web.data import Today
from pythonhosted.stats_web.prewarm import PATHS, Prewarm
from pythonhosted.stats_web.shedding import Admission
from pythonhosted.web.server import running
from support.metrics import sample
from support.processes import wait_until
from support.stats_warehouse import add_batch, build, event_lines, publish

PREWARMED = "stats_web_answers_prewarmed_total"
COMPUTED = "stats_web_answers_computed_total"


def test_the_most_downloaded_projects_answers_are_cached_after_each_publish(
    tmp_path: Path,
) -> None:
    """demo-pkg is the most downloaded project of the last 30 days, and the pre-warm takes
    one: its five answers are made at start and again after a publish, each as a visitor
    would get it computed, with the publish's downloads in it; other's are not."""
    warehouse = build(tmp_path, event_lines(), prewarm_projects=1)
    paths = [template.format("demo-pkg") for template in PATHS]
    with running(build_app(warehouse.settings)) as base:
        wait_until(lambda: sample(base, PREWARMED) == 5)
        warm = {path: httpx.get(base + path) for path in paths}
        assert sample(base, COMPUTED) == 0
        assert httpx.get(base + "/packages/other").status_code == 200
        assert sample(base, COMPUTED) == 1
        add_batch(warehouse, 1000, 2)
        publish(warehouse)
        wait_until(lambda: sample(base, PREWARMED) == 10)
        after = {path: httpx.get(base + path) for path in paths}
        assert sample(base, COMPUTED) == 1
        assert httpx.get(base + "/api/packages/demo-pkg/recent").json()["data"]["last_day"] == 5
    cold = warehouse.settings.model_copy(
        update={"stats_web": warehouse.settings.stats_web.model_copy(update={"cache_bytes": 0})}
    )
    with running(build_app(cold)) as base:
        for path in paths:
            computed = httpx.get(base + path)
            assert (after[path].status_code, after[path].content) == (200, computed.content)
            assert after[path].headers["etag"] == computed.headers["etag"]
            assert warm[path].headers["etag"] != computed.headers["etag"], path


class FakeApp:
    """The app as the pre-warm sees it: a version, top projects, answers of 1,000 bytes
    (488 of body and the cache's 512 of bookkeeping)."""

    def __init__(self, cache: AnswerCache, projects: list[str]) -> None:
        self.cache = cache
        self.admission = Admission(16)
        self.today = Today()
        self.projects = projects
        self.version = 1
        self.warmed: list[str] = []
        self.on_warm: Callable[[], None] = lambda: None

    async def data_version(self) -> int | None:
        return self.version

    async def top_projects(self, count: int) -> list[str]:
        return self.projects[:count]

    async def warm(self, path: str) -> bool:
        self.warmed.append(path)
        key = (len(self.warmed),)  # no text: the entry weighs 1,000 bytes
        self.cache.put(key, Answer(200, b"x" * 488, b"text/plain", '"e"', self.version))
        self.on_warm()
        return True


def test_a_round_waits_for_visitors_answers() -> None:
    """While a visitor's answer is being computed, the round computes nothing; it goes on
    once no visitor's is."""
    app = FakeApp(AnswerCache(1000, 10**6), ["a", "b"])
    prewarm = Prewarm(app, projects=2, seconds=60.0)

    async def scenario() -> tuple[list[str], int]:
        visitor: Hashable = ("/packages/x",)
        with app.admission.admitted(visitor, long=True):
            round_ = asyncio.create_task(prewarm.round())
            for _ in range(100):  # the round's turns: it stays parked on the admission
                await asyncio.sleep(0)
            held = list(app.warmed)
        return held, await round_

    held, warmed = asyncio.run(scenario())
    assert held == []
    assert warmed == 10
    assert app.warmed == [template.format(name) for name in ("a", "b") for template in PATHS]
    assert asyncio.run(prewarm.round()) == 0  # done for this version and day


def test_a_round_stops_at_half_the_cache_and_at_a_new_version() -> None:
    """Entries of 1,000 bytes: a 10,000-byte cache takes five, then the round stops; 500
    projects ask for 2,500 answers. A publish midway ends the round; the next round is
    for the new version."""
    app = FakeApp(AnswerCache(1000, 10_000), [f"p{n}" for n in range(500)])
    assert asyncio.run(Prewarm(app, projects=500, seconds=60.0).round()) == 5
    assert (len(app.cache), app.cache.bytes) == (5, 5_000)

    app = FakeApp(AnswerCache(1000, 10**6), [f"p{n}" for n in range(500)])
    prewarm = Prewarm(app, projects=500, seconds=60.0)

    def publish() -> None:
        if len(app.warmed) == 3:
            app.version = 2

    app.on_warm = publish
    assert asyncio.run(prewarm.round()) == 3
    app.on_warm = lambda: None
    assert asyncio.run(prewarm.round()) == 497  # to half of the 1,000 entries
    assert app.warmed[3] == "/packages/p0"  # the new round starts over
    assert app.cache.get((4,), 2) is not None


def test_no_round_before_there_is_data() -> None:
    """No downloads yet (version 0), or a ClickHouse version not read yet (-1): nothing."""
    for version in (0, -1, None):
        app = FakeApp(AnswerCache(1000, 10**6), ["a"])
        app.version = version  # type: ignore[assignment]
        assert asyncio.run(Prewarm(app, projects=1, seconds=60.0).round()) == 0
        assert app.warmed == []


def test_a_warehouse_that_fails_every_look_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A round looks at the data version every second; 200 failed looks in a row (the
    warehouse file unreadable) are one warning, and one line says when rounds work again."""
    monkeypatch.setattr(prewarm_module, "CHECK_EVERY", 0)
    app = FakeApp(AnswerCache(1000, 10**6), ["a"])
    looks = 0

    async def data_version() -> int | None:
        nonlocal looks
        looks += 1
        if looks <= 200:
            raise OSError("w.duckdb: Permission denied")
        return 1

    app.data_version = data_version  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(Prewarm(app, projects=1, seconds=60.0).run())
        while len(app.warmed) < len(PATHS):
            await asyncio.sleep(0)
        task.cancel()

    with caplog.at_level(logging.INFO, logger=prewarm_module.__name__):
        asyncio.run(scenario())
    assert [record.getMessage() for record in caplog.records] == [
        "stats web pre-warm stopped: w.duckdb: Permission denied",
        "stats web pre-warm working again",
    ]


def test_a_round_waits_for_the_version_to_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A publish moves the version once per load: here 20 loads, one every 0.4 s, while each
    answer takes 0.1 s to compute (time is counted, not waited). A round started between two
    loads computed answers the next load made stale at once, round after round. Now no round
    starts while the version moves; once it holds, one round computes each answer once."""
    clock = 0.0
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        nonlocal clock
        clock += seconds
        await real_sleep(0)

    monkeypatch.setattr(prewarm_module.asyncio, "sleep", sleep)
    app = FakeApp(AnswerCache(1000, 10**6), ["a"])

    async def data_version() -> int | None:
        app.version = min(1 + int(clock / 0.4), 20)
        return app.version

    def computed() -> None:
        nonlocal clock
        clock += 0.1

    app.data_version = data_version  # type: ignore[method-assign]
    app.on_warm = computed

    async def scenario() -> None:
        task = asyncio.create_task(Prewarm(app, projects=1, seconds=60.0).run())
        while len(app.warmed) < len(PATHS) or app.cache.get((len(app.warmed),), 20) is None:
            await real_sleep(0)
        task.cancel()

    asyncio.run(scenario())
    assert app.warmed == [template.format("a") for template in PATHS]
