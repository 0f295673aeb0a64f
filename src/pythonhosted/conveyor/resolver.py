"""The resolver legacy URLs use: a bounded, coalescing cache in front of one source.

Spec rule 7: the lookup is this service's cost, so fresh answers are served from memory
(least recently used evicted past ``entries``), and concurrent misses for one project join the
single fetch already in flight. ``entries=0`` turns both off (every request fetches): the
reference design, kept for the benchmark's comparison.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from packaging.utils import canonicalize_name

from pythonhosted.conveyor.index import ProjectFiles
from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.conveyor.sources import Entry, Source


class UpstreamStatus(Exception):
    """The source answered with a client error; the legacy URL answers the same status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status


class Resolver:
    def __init__(self, source: Source, entries: int, metrics: ConveyorMetrics) -> None:
        self.source = source
        self.entries = entries
        self.metrics = metrics
        self._cache: OrderedDict[str, Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[Entry]] = {}
        self._hit = metrics.cache.labels("hit")

    async def resolve(self, project: str) -> ProjectFiles:
        """The project's files; UpstreamStatus for a 4xx, UpstreamUnavailable on failure."""
        entry = await self._entry(canonicalize_name(project))
        if entry.files is None:
            raise UpstreamStatus(entry.status)
        return entry.files

    async def _entry(self, name: str) -> Entry:
        if self.entries == 0:
            return await self.source.fetch(name, None)
        entry = self._cache.get(name)
        if entry is not None and entry.fresh_until > time.monotonic():
            self._cache.move_to_end(name)
            self._hit.inc()
            return entry
        task = self._inflight.get(name)
        if task is None:
            self.metrics.cache.labels("miss").inc()
            task = asyncio.ensure_future(self._fill(name, entry))
            task.add_done_callback(_retrieve)
            self._inflight[name] = task
        else:
            self.metrics.cache.labels("coalesced").inc()
        # Shielded: one client hanging up must not cancel the fetch the others are waiting on.
        return await asyncio.shield(task)

    async def _fill(self, name: str, stale: Entry | None) -> Entry:
        try:
            entry = await self.source.fetch(name, stale)
        finally:
            del self._inflight[name]
        if entry.storable:
            self._cache[name] = entry
            self._cache.move_to_end(name)
            while len(self._cache) > self.entries:
                self._cache.popitem(last=False)
        else:
            self._cache.pop(name, None)
        self.metrics.cache_entries.set(len(self._cache))
        return entry

    async def close(self) -> None:
        await self.source.close()


def _retrieve(task: asyncio.Task[Entry]) -> None:
    """Mark a failed fetch's exception as seen even when every waiter has gone."""
    if not task.cancelled():
        task.exception()
