"""Log lines that each request can cause, bounded: a few lines per reason a minute, then one
summary line.

A flood of hostile or broken requests is a flood of such lines: one line each (~200-300
bytes) would let anyone fill an operator's disk at the rate a service answers (thousands a
second). So the first ``burst`` of each reason in a window are logged one by one at their
level (a sample to act on), the rest at DEBUG (all of them with ``PYTHONHOSTED_LOG_LEVEL=DEBUG``),
and when the window ends one line says how many of each reason were not logged one by one,
at the highest level among them. The services' metrics still count every one. At most
``burst`` x (number of reasons) + 1 lines a window, whatever the traffic.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any


class BoundedLog:
    """Use from the event loop's thread. ``summary`` is a %-format of the count not logged,
    the window's seconds and the counts by reason; the summary record carries the counts as
    ``extra[counts_field]``."""

    def __init__(
        self,
        logger: logging.Logger,
        summary: str,
        counts_field: str,
        *,
        window: float = 60.0,
        burst: int = 10,
    ) -> None:
        self._logger = logger
        self._summary = summary
        self._counts_field = counts_field
        self._window_seconds = window
        self._burst = burst
        self._seen: Counter[str] = Counter()  # lines by reason in this window
        self._quiet: Counter[str] = Counter()  # those logged only at DEBUG
        self._quiet_level = logging.DEBUG
        self._window: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def note(
        self, level: int, reason: str, message: str, *args: Any, exc_info: bool = False
    ) -> None:
        """Log one line for ``reason`` (``exc_info``: with the exception being handled)."""
        loop = asyncio.get_running_loop()
        if self._window is not None and self._loop is not loop:
            self._summarise()  # a window of an earlier event loop (asyncio.run again) ends now
        if self._window is None:
            self._loop = loop
            self._window = loop.call_later(self._window_seconds, self._summarise)
        seen = self._seen[reason] = self._seen[reason] + 1
        if seen <= self._burst:
            self._logger.log(level, message, *args, exc_info=exc_info, extra={"reason": reason})
            return
        self._quiet[reason] += 1
        self._quiet_level = max(self._quiet_level, level)
        self._logger.debug(message, *args, exc_info=exc_info, extra={"reason": reason})

    def _summarise(self) -> None:
        """The window's end: one line for what was not logged one by one, a fresh window."""
        if self._quiet:
            counts = ", ".join(f"{reason}={count}" for reason, count in sorted(self._quiet.items()))
            self._logger.log(
                self._quiet_level,
                self._summary,
                self._quiet.total(),
                self._window_seconds,
                counts,
                extra={self._counts_field: dict(self._quiet)},
            )
        self._seen.clear()
        self._quiet.clear()
        self._quiet_level = logging.DEBUG
        self._window = None


def failure_log(logger: logging.Logger, what: str) -> BoundedLog:
    """For the failures of something every request needs (a store, an upstream index): while
    it is down each request fails, and a line each would flood the log when it matters most."""
    summary = f"{what} failures: %d more in %g s (not logged one by one): %s"
    return BoundedLog(logger, summary, "failures")
