"""A bounded pre-warm after each publish: the most downloaded projects' answers computed in
the background, so the first visitor after a publish finds them cached.

Why: a publish makes the cached answers it changed stale (every page: they show the
watermark, :mod:`.changes`), and the first visitor of each answer paid for computing it. A
cold project page at 50M rows costs 65-90 ms of CPU on the Intel Xeon, so 16 visitors of
distinct cold pages at once on two cores waited 1-2 s (BENCHMARKS.md): no query plan makes
16 cold pages fit in 100 ms of two cores. Visitors ask mostly about the popular projects,
and those answers can be made before anyone asks.

Bounded, and behind visitors:

- the ``stats_web.prewarm_projects`` most downloaded projects of the last 30 days (0: no
  pre-warm), the answers of :data:`PATHS` each, in that order;
- for at most ``stats_web.prewarm_seconds`` after a new data version (or a new day) is
  seen, and never past half of the cache's bytes or entries, so a round never pushes out
  more than half of what visitors' answers hold;
- one answer at a time, each started only while no visitor's answer is being computed
  (:attr:`.shedding.Admission.idle`): a visitor's answer waits for at most the one pre-warm
  answer under way, and a visitor asking for that very answer joins its computation;
- a round starts once the data version has held for one look (:data:`CHECK_EVERY`): a
  publish moves it once per load (each group of files, each table), and a round started
  between two of them computed answers the next load made stale at once (and a visitor then
  computed again the ones it had not reached);
- a round stops when the data version moves on; the next round starts over for the new one.
  A pre-warmed answer is cached under the data version it was computed from, and the cache
  serves it at another version only when nothing it read changed since (:mod:`.changes`:
  such an answer is not computed again), so none outlives a publish that changed it.

On DuckDB the round notices a publish by itself (two ``stat`` calls a check,
:data:`CHECK_EVERY`); on ClickHouse it follows the version requests read (reading it in the
background would hold a chDB directory that a publish in another process may be waiting
for).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date
from typing import Protocol

from pythonhosted.stats_web.answers import AnswerCache
from pythonhosted.stats_web.data import Today
from pythonhosted.stats_web.shedding import Admission

log = logging.getLogger(__name__)
CHECK_EVERY = 1.0  # seconds between looks at the data version
PATHS = (
    "/packages/{}",
    "/badge/{}.svg",
    "/api/packages/{}/recent",
    "/api/packages/{}/overall",
    "/api/v1/projects/{}/summary",
)
"""What a popular project is asked most without parameters: its page, its badge (embedded in
READMEs), pypistats' ``recent`` and ``overall``, our summary."""


class Warmable(Protocol):
    """What the pre-warm needs of the app (:class:`.app.StatsWebApp`)."""

    cache: AnswerCache
    admission: Admission
    today: Today

    async def data_version(self) -> int | None:
        """The current data version (None: the warehouse cannot say)."""

    async def top_projects(self, count: int) -> list[str]:
        """The ``count`` most downloaded projects of the last 30 days, most first."""

    async def warm(self, path: str) -> bool:
        """Compute and cache ``path``'s answer unless cached; whether it was computed."""


class Prewarm:
    def __init__(self, app: Warmable, projects: int, seconds: float) -> None:
        self.app = app
        self.projects = projects
        self.seconds = seconds
        self._warmed: tuple[int, date] | None = None  # the version and day of the last round

    async def run(self) -> None:
        """Rounds for as long as the app runs (cancelled at its stop).

        A warehouse that cannot be read fails every look, once a second: its failure is
        logged once, not each time (visitors' requests report it too), and once more when
        rounds work again.
        """
        failing: str | None = None
        seen: int | None = None  # the version at the last look
        while True:
            try:
                version = await self.app.data_version()
                if version == seen:
                    await self.round()
                seen = version
            except Exception as exc:  # the warehouse unreadable for now: visitors are told
                if str(exc) != failing:
                    log.warning("stats web pre-warm stopped: %s", exc)
                failing = str(exc)
            else:
                if failing is not None:
                    log.info("stats web pre-warm working again")
                failing = None
            await asyncio.sleep(CHECK_EVERY)

    async def round(self) -> int:
        """Pre-warm for the current data version and day unless done already; how many
        answers were computed."""
        version = await self.app.data_version()
        # none yet (0), or not read yet (-1: a ClickHouse warehouse before any request)
        generation = (
            (version, self.app.today.last_complete_day()) if version and version > 0 else None
        )
        if generation is None or generation == self._warmed:
            return 0
        self._warmed = generation
        deadline = time.monotonic() + self.seconds
        warmed = 0
        for name in await self.app.top_projects(self.projects):
            for template in PATHS:
                await self.app.admission.idle.wait()
                if time.monotonic() > deadline or self._full():
                    return warmed
                if await self.app.data_version() != version:
                    return warmed
                warmed += await self.app.warm(template.format(name))
        return warmed

    def _full(self) -> bool:
        cache = self.app.cache
        return 2 * cache.bytes >= cache.max_bytes or 2 * len(cache) >= cache.max_entries
