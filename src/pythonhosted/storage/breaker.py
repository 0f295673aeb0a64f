"""Whether a store is asked at all: skipped for a while after failing reads in a row.

With an archive behind it, a primary that fails (spec rule 5) costs each lookup its failure
before the archive answers: a refused connection little, but a primary that hangs the whole
connect or first-byte timeout (2 s by default). In an outage every download then waits those
2 s, and at production rates thousands wait at once, holding their connections. As a CDN's
health check takes a failing origin out of rotation, after ``TRIP_AFTER`` lookups in a row
that the primary failed (a 5xx, a timeout, a refused connection; a 404 is an answer) lookups
ask the archive first for ``COOLDOWN`` seconds, and the primary only for what the archive
lacks (a file uploaded since its last copy: :class:`~.fallback.StorePair`); then one lookup
tries the primary first again, the others still skipping it. Any answer of the primary's
closes the breaker; the trial's failure opens it for another ``COOLDOWN``.

A store with nothing to fall back to (docs, the index, an edge without an archive) has the
same problem with a store that hangs: each reader waited the read timeout for its 503 (10 s
for docs), all of them holding connections. There (``Timeouts.skip_hanging``) reads that
timed out ``TRIP_AFTER`` times in a row make reads fail at once for ``COOLDOWN``, then one
tries the store again; a quick failure (a 500) is an answer, and never trips it.

Per process, used from its event loop; a forced backend (spec rule 8) is never skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIP_AFTER = 5  # failed lookups (reads that hung, for a store alone) in a row that open it
COOLDOWN = 5.0  # seconds it stays open before one lookup tries the store (first) again
# What the warning says is done while it is open: with a primary ▸ archive pair, and for a
# store alone whose reads hang (the store's name, the count and the cooldown fill it in).
ARCHIVE_FIRST = (
    "%s failed %d lookups in a row: lookups ask the archive first, and the primary only for "
    "what it lacks or every %g s"
)
HANGING = "%s timed out %d reads in a row: its reads fail at once, but for one every %g s"


class Breaker:
    """Closed (the store is asked), open (skipped until a time), or one trial after that."""

    def __init__(
        self,
        label: str,
        skipping: str = ARCHIVE_FIRST,
        trip_after: int = TRIP_AFTER,
        cooldown: float = COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self._skipping = skipping
        self._trip_after = trip_after
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0  # in a row
        self._open_until: float | None = None
        self._trial = False  # a lookup is trying the primary while open

    @property
    def is_open(self) -> bool:
        """Whether the primary is being skipped (a trial may be under way)."""
        return self._open_until is not None

    def allows(self) -> bool:
        """Whether this lookup asks the primary; after the cooldown, the first to ask is the
        trial and must report back (:meth:`answered`, :meth:`failed` or :meth:`abandoned`)."""
        if self._open_until is None:
            return True
        if self._trial or self._clock() < self._open_until:
            return False
        self._trial = True
        return True

    def answered(self) -> None:
        """The store answered (the object, or "no such object"; for ``HANGING`` any quick
        answer)."""
        if self._open_until is not None:
            log.warning("%s answers again", self.label)
        self._failures = 0
        self._open_until = None
        self._trial = False

    def failed(self) -> None:
        """The store failed a lookup (5xx, timeout, refused connection; for ``HANGING`` a
        read that timed out)."""
        self._failures += 1
        if self._open_until is None and self._failures < self._trip_after:
            return
        if self._open_until is None:
            log.warning(self._skipping, self.label, self._failures, self._cooldown)
        self._open_until = self._clock() + self._cooldown
        self._trial = False

    def abandoned(self) -> None:
        """A lookup that asked the primary ended without its answer (its client left): a
        trial it was is free for the next lookup."""
        self._trial = False
