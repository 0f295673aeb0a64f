"""Quick answers (badges, shields, pypistats' ``recent`` and ``overall``) never wait behind
long ones (pages): their own threads, admission and turn at running Python.

The long answers here are held mid-computation, inside their turn, by a stand-in for the
page's render that waits for the test to let it go: which answers can complete meanwhile is
then a matter of structure, not of the machine's speed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from pythonhosted import threads
from pythonhosted.stats_web import badges, build_app, lanes, pages
from pythonhosted.web.server import running
from support.flood import Answer, fetch_all
from support.metrics import sample
from support.processes import wait_until
from support.stats_warehouse import Warehouse, admitting

MONTH = "6/month"  # demo-pkg's downloads in the last 30 complete days, mirrors left out
POLLERS = 10  # requests for each quick question, as a badge service's pollers
QUICK_WAIT = 60.0  # seconds the quick crowd has to complete while the long answers are held


class HeldPages:
    """Pages whose render waits, inside its turn, until the block this is used as ends
    (bounded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inside = 0
        self._lock = threading.Lock()
        self._released = threading.Event()
        route = pages.route

        def held(path: str, params: Any) -> Callable[..., bytes]:
            render = route(path, params)

            def waiting(*args: Any) -> bytes:
                with self._lock:
                    self.inside += 1
                self._released.wait(300)
                return render(*args)

            return waiting

        monkeypatch.setattr(pages, "route", held)

    def __enter__(self) -> HeldPages:
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()


def long_paths(count: int) -> list[str]:
    """Distinct questions for demo-pkg's page (each its own cache key)."""
    found = [
        f"/packages/demo-pkg?range={span}&interval={interval}&mirrors={mirrors}"
        for span in ("30", "90", "180", "365", "all")
        for interval in ("day", "week", "month")
        for mirrors in ("true", "false")
    ]
    assert len(found) >= count and all(lanes.is_long(path.split("?")[0]) for path in found)
    return found[:count]


def quick_paths(count: int) -> list[str]:
    """``count`` distinct quick questions, each asked by :data:`POLLERS` clients."""
    distinct = [
        f"/api/v1/projects/demo-pkg/shields?label=j-{n}"
        if n % 2
        else f"/badge/demo-pkg.svg?label=s-{n}"
        for n in range(count)
    ]
    return distinct * POLLERS


def assert_quick_answer(path: str, answer: Answer) -> None:
    label = path.rsplit("label=", 1)[1]
    assert answer.status == 200
    if path.startswith("/badge/"):
        assert answer.body == badges.svg(label, MONTH, badges.COLORS["blue"], "flat")
    else:
        message = {"schemaVersion": 1, "label": label, "message": MONTH, "color": "007ec6"}
        assert orjson.loads(answer.body) == message


@contextmanager
def asked(base: str, paths: list[str]) -> Iterator[Future[list[Answer]]]:
    """``paths`` asked at once, each on a connection of its own, in the background."""
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(asyncio.run, fetch_all(base, paths, concurrency=len(paths), timeout=300))


def test_the_routes_badge_services_poll_are_quick_and_the_rest_long() -> None:
    quick = [
        "/badge/demo-pkg.svg",
        "/api/v1/projects/demo-pkg/shields",
        "/api/packages/demo-pkg/recent",
        "/api/packages/demo-pkg/overall",
    ]
    long = [
        "/packages/demo-pkg",
        "/compare",
        "/",
        "/api/v1/compare",
        "/api/v1/trending",
        "/api/v1/projects/demo-pkg/summary",
        "/api/v1/projects/demo-pkg/downloads",
        "/api/packages/demo-pkg/python_minor",
        "/badge/demo-pkg.svg/extra",
        "/api/packages/a/b/recent",
    ]
    assert [lanes.is_long(path) for path in quick + long] == [False] * 4 + [True] * 10


def test_quick_answers_complete_while_two_long_ones_hold_their_computation(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two cold pages held mid-computation, and 16 distinct cold badges asked by 10 pollers
    each (160 requests): every badge is answered, exactly, while both pages are still held.
    Before, the two pages held both of the process's turns, and every badge waited for
    them to finish. The pages are right once let go."""
    held = HeldPages(monkeypatch)
    settings = admitting(warehouse.settings, 64)
    pages_asked, badges_asked = long_paths(2), quick_paths(16)
    with running(build_app(settings)) as base, asked(base, pages_asked) as slow, held:
        wait_until(lambda: sample(base, "stats_web_answers_computing") == 2, timeout=60)
        wait_until(lambda: held.inside >= 1, timeout=60)
        with asked(base, badges_asked) as quick, held:  # the pages let go at its end
            wait_until(quick.done, timeout=QUICK_WAIT)
        for path, answer in zip(badges_asked, quick.result(), strict=True):
            assert_quick_answer(path, answer)
        assert [answer.status for answer in slow.result()] == [200, 200]
    assert held.inside == 2
    assert threads.LONG_AT_ONCE == 1  # so one page held a turn, and the other waited


def test_long_answers_filling_their_bound_shed_no_quick_answer(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``max_pending`` (16) cold pages held mid-computation: the long lane is full, and a
    17th page is shed, but 16 distinct cold badges asked by 10 pollers each are all
    answered while the pages are held. Before, the pages filled the one bound and all 160
    badge requests were answered 503."""
    held = HeldPages(monkeypatch)
    settings = admitting(warehouse.settings, 16)
    pages_asked, badges_asked = long_paths(17), quick_paths(16)
    with running(build_app(settings)) as base, asked(base, pages_asked[:16]) as slow, held:
        wait_until(lambda: sample(base, "stats_web_answers_computing") == 16, timeout=60)
        shed = asyncio.run(fetch_all(base, pages_asked[16:], concurrency=1))
        assert [answer.status for answer in shed] == [503]
        with asked(base, badges_asked) as quick, held:
            wait_until(quick.done, timeout=QUICK_WAIT)
        for path, answer in zip(badges_asked, quick.result(), strict=True):
            assert_quick_answer(path, answer)
        assert [answer.status for answer in slow.result()] == [200] * 16
        assert sample(base, "stats_web_shed_total") == 1
