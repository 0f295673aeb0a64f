"""How many answers run their Python at once, whatever the pool and admission allow."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
import pytest

from pythonhosted import threads
from pythonhosted.stats_web import badges, build_app
from pythonhosted.web.server import running
from support.flood import fetch_all
from support.stats_warehouse import Warehouse

CROWD = 16  # stats_web.max_pending: every one admitted, each with a thread of its own
GIVE_THE_OLD_CODE = 2.0  # seconds for a crowd to show itself (wall time, never CPU)


def test_a_crowd_of_cold_answers_runs_its_python_a_few_at_a_time(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 distinct cold answers at once: each had a thread, and all 16 ran Python at once
    beside the event loop, which then got the GIL about once per 16 switch intervals (every
    service of ``serve`` paused with it). Now at most ``threads.PYTHON_AT_ONCE`` of them
    build at a time, the others asleep on a lock; every answer is still right.

    Cannot flake: the count is of threads inside the builder, not a time. Each of the first
    builders waits (at most ``GIVE_THE_OLD_CODE`` s, once) until more than the bound are
    inside, which the old code reaches at once; the new code never, so it waits that out
    once and goes on."""
    drawn = badges.shields
    inside = 0
    most = 0
    lock = threading.Lock()
    crowded = threading.Event()

    def counted(label: str, text: str, color: str) -> dict[str, Any]:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
            if inside > threads.PYTHON_AT_ONCE:
                crowded.set()
        try:
            if not crowded.wait(GIVE_THE_OLD_CODE):
                crowded.set()  # the bound held: the rest go on without waiting
            return drawn(label, text, color)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(badges, "shields", counted)
    paths = [f"/api/v1/projects/demo-pkg/shields?label=crowd-{n}" for n in range(CROWD)]
    with running(build_app(warehouse.settings)) as base:
        answers = asyncio.run(fetch_all(base, paths, concurrency=CROWD, timeout=120))
    assert [(answer.status, orjson.loads(answer.body)["label"]) for answer in answers] == [
        (200, f"crowd-{n}") for n in range(CROWD)
    ]
    assert most == threads.PYTHON_AT_ONCE
