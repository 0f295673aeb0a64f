"""Bounded logging: a sample per reason a window, then one summary at the highest level."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from pythonhosted.boundedlog import BoundedLog


def test_the_summary_counts_each_reason_at_the_highest_level_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("pythonhosted.test_boundedlog")

    async def flood() -> None:
        log = BoundedLog(logger, "%d more in %g s: %s", "counts", window=0.05, burst=2)
        for n in range(5):
            log.note(logging.INFO, "missing", "missing %d", n)
        for n in range(3):
            log.note(logging.WARNING, "broken", "broken %d", n)
        deadline = time.monotonic() + 10
        while len(caplog.records) < 2 + 2 + 3 + 1 + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.DEBUG, logger=logger.name):
        asyncio.run(flood())
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "missing 0"),
        ("INFO", "missing 1"),
        ("DEBUG", "missing 2"),
        ("DEBUG", "missing 3"),
        ("DEBUG", "missing 4"),
        ("WARNING", "broken 0"),
        ("WARNING", "broken 1"),
        ("DEBUG", "broken 2"),
        ("WARNING", "4 more in 0.05 s: broken=1, missing=3"),
    ]
    assert caplog.records[-1].counts == {"missing": 3, "broken": 1}  # type: ignore[attr-defined]


def test_a_second_event_loop_starts_a_window_of_its_own(caplog: pytest.LogCaptureFixture) -> None:
    """A command that runs asyncio.run twice with one object: the first loop's window, whose
    timer died with that loop, ends when the second loop notes, instead of silencing it."""
    logger = logging.getLogger("pythonhosted.test_boundedlog")
    log = BoundedLog(logger, "%d more in %g s: %s", "counts", window=3600, burst=1)

    async def note(n: int) -> None:
        log.note(logging.INFO, "missing", "missing %d", n)
        log.note(logging.INFO, "missing", "missing %d", n + 1)

    with caplog.at_level(logging.INFO, logger=logger.name):
        asyncio.run(note(0))
        asyncio.run(note(10))
    assert [r.getMessage() for r in caplog.records] == [
        "missing 0",
        "1 more in 3600 s: missing=1",
        "missing 10",
    ]
