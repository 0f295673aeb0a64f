"""Refusals (and responses cut off mid-body) in the log, bounded: a few lines per reason a
minute, then one summary line.

A flood of hostile requests is a flood of refusals: one INFO line each (~200 bytes) would let
anyone fill an operator's disk at the rate camo can refuse (thousands a second). go-camo logs
refusals only at DEBUG and counts them in its metrics; here the first :data:`BURST` of each
reason in a :data:`WINDOW` are still logged at INFO (a sample to act on, as before), the rest
at DEBUG (all of them with ``-v``), and when the window ends one INFO line says how many of
each reason were not logged one by one. ``camo_responses_failed_total{reason}`` counts every
one. At most ``BURST`` x (number of reasons) + 1 lines a minute, whatever the traffic.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from pythonhosted.camo.errors import Refused

#: Seconds a window lasts; it starts at the first refusal after the previous one ended.
WINDOW = 60.0
#: Refusals of one reason logged one by one at INFO in a window.
BURST = 10

log = logging.getLogger("pythonhosted.camo.proxy")


class RefusalLog:
    """Logs refusals within the bounds above; use from the event loop's thread."""

    def __init__(self) -> None:
        self._seen: Counter[str] = Counter()  # refusals by reason in this window
        self._quiet: Counter[str] = Counter()  # those logged only at DEBUG
        self._window: asyncio.TimerHandle | None = None

    def refused(self, refusal: Refused) -> None:
        self._note("camo refused: %s", refusal.reason, refusal.detail)

    def cut(self, reason: str, detail: str) -> None:
        """A response cut off mid-body (the client saw a status, then a dropped connection)."""
        self._note("camo cut off: %s", reason, detail)

    def _note(self, message: str, reason: str, detail: str) -> None:
        if self._window is None:
            self._window = asyncio.get_running_loop().call_later(WINDOW, self._summarise)
        seen = self._seen[reason] = self._seen[reason] + 1
        if seen <= BURST:
            log.info(message, detail, extra={"reason": reason})
            return
        self._quiet[reason] += 1
        log.debug(message, detail, extra={"reason": reason})

    def _summarise(self) -> None:
        """The window's end: one line for what was not logged at INFO, and a fresh window."""
        if self._quiet:
            counts = ", ".join(f"{reason}={count}" for reason, count in sorted(self._quiet.items()))
            log.info(
                "camo refused or cut off %d more in %g s (not logged one by one): %s",
                self._quiet.total(),
                WINDOW,
                counts,
                extra={"refused": dict(self._quiet)},
            )
        self._seen.clear()
        self._quiet.clear()
        self._window = None
