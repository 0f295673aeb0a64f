"""Refusals (and responses cut off mid-body) in the log, bounded (:mod:`pythonhosted.boundedlog`):
the first :data:`BURST` of each reason in a :data:`WINDOW` at INFO, the rest at DEBUG, then one
summary line. go-camo logs refusals only at DEBUG; ``camo_responses_failed_total{reason}``
counts every one.
"""

from __future__ import annotations

import logging

from pythonhosted.boundedlog import BoundedLog
from pythonhosted.camo.errors import Refused

#: Seconds a window lasts; it starts at the first refusal after the previous one ended.
WINDOW = 60.0
#: Refusals of one reason logged one by one at INFO in a window.
BURST = 10

log = logging.getLogger("pythonhosted.camo.proxy")


class RefusalLog:
    """Logs refusals within the bounds above; use from the event loop's thread."""

    def __init__(self) -> None:
        self._log = BoundedLog(
            log,
            "camo refused or cut off %d more in %g s (not logged one by one): %s",
            "refused",
            window=WINDOW,
            burst=BURST,
        )

    def refused(self, refusal: Refused) -> None:
        self._log.note(logging.INFO, refusal.reason, "camo refused: %s", refusal.detail)

    def cut(self, reason: str, detail: str) -> None:
        """A response cut off mid-body (the client saw a status, then a dropped connection)."""
        self._log.note(logging.INFO, reason, "camo cut off: %s", detail)
