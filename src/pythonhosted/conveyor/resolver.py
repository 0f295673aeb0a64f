"""The resolver legacy URLs use: a bounded, coalescing cache in front of one source.

Spec rule 7: the lookup is this service's cost, so fresh answers are served from memory, and
concurrent misses for one project join the single fetch already in flight. The cache is bounded
twice: at most ``entries`` projects and ``max_bytes`` of estimated memory (a project with tens
of thousands of files weighs megabytes), least recently used evicted first. Unknown projects
(an upstream 404 with a lifetime, an own-index project with no files) are cached the same way,
so a flood of made-up names costs one lookup each and never more than the bounds.
``entries=0`` turns cache and coalescing off (every request fetches): the reference design,
kept for the benchmark's comparison. With a catalog ``watch`` (the own index), an upload, a
yank or a delete makes that project's entry stale within a second instead of ``cache_ttl``
(the source reads it again from what the entry holds: the records that changed); fetches of
it under way when it changed are neither kept nor joined.
"""

from __future__ import annotations

import dataclasses
import time

from cachetools import LRUCache
from packaging.utils import canonicalize_name

from pythonhosted.catalog import CatalogWatch, ReadEpochs, is_project_name
from pythonhosted.coalesce import Coalescer
from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.conveyor.projectfiles import ProjectFiles
from pythonhosted.conveyor.sources import Entry, Source


class UpstreamStatus(Exception):
    """The source answered with a client error; the legacy URL answers the same status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status


# Names longer than any real project's are looked up but never kept: the key's size is part
# of an entry's weight only up to this many characters.
MAX_CACHED_NAME = 255
ENTRY_WEIGHT = 512 + MAX_CACHED_NAME  # the key, the entry and the cache's own bookkeeping


NO_FILES = ProjectFiles(())


# What the own index's entries hold more per file: the listing's tag and its slots, so the
# next read of the project reads only what changed (tracemalloc: ~150 bytes).
READ_WEIGHT = 192


def weight(entry: Entry) -> int:
    """Estimated bytes an entry holds in the cache (measured with tracemalloc, ~10% over)."""
    files = entry.files.weight if entry.files is not None else 0
    return ENTRY_WEIGHT + files + (READ_WEIGHT * len(entry.read.kept) if entry.read else 0)


class Resolver:
    def __init__(
        self,
        source: Source,
        entries: int,
        max_bytes: int,
        metrics: ConveyorMetrics,
        watch: CatalogWatch | None = None,
    ) -> None:
        self.source = source
        self.entries = entries
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.watch = watch
        self._cache: LRUCache[str, Entry] = LRUCache(maxsize=max_bytes, getsizeof=weight)
        self._epochs = ReadEpochs()
        self._inflight: Coalescer[tuple[tuple[int, int], str], Entry] = Coalescer()
        self._hit = metrics.cache.labels("hit")

    async def resolve(self, project: str) -> ProjectFiles:
        """The project's files; UpstreamStatus for a 4xx, UpstreamUnavailable on failure."""
        if self.watch is not None:
            changes = await self.watch.changes()
            changed = list(self._cache) if changes.everything else changes.projects
            for name in changed:
                entry = self._cache.get(name)
                if entry is not None:  # stale: read again from what it holds
                    self._cache[name] = dataclasses.replace(entry, fresh_until=0.0)
            self._epochs.advance(changes)
        if not is_project_name(project):
            return NO_FILES  # never a project's name: no source is asked (nor cached)
        entry = await self._entry(canonicalize_name(project))
        if entry.files is None:
            raise UpstreamStatus(entry.status)
        return entry.files

    async def _entry(self, name: str) -> Entry:
        if self.entries == 0:
            return await self.source.fetch(name, None)
        entry = self._cache.get(name)  # a get marks it most recently used
        if entry is not None and entry.fresh_until > time.monotonic():
            self._hit.inc()
            return entry
        key = (self._epochs.of(name), name)
        self.metrics.cache.labels("coalesced" if self._inflight.busy(key) else "miss").inc()
        return await self._inflight.run(key, lambda: self._fill(name, entry))

    async def _fill(self, name: str, stale: Entry | None) -> Entry:
        epoch = self._epochs.of(name)
        entry = await self.source.fetch(name, stale)
        if epoch != self._epochs.of(name):
            return entry  # fetched before the catalog changed: answer this request only
        if entry.storable and len(name) <= MAX_CACHED_NAME and weight(entry) <= self.max_bytes:
            self._cache[name] = entry  # evicts the least recently used past max_bytes
            while len(self._cache) > self.entries:
                self._cache.popitem()
        else:
            self._cache.pop(name, None)
        self.metrics.cache_entries.set(len(self._cache))
        self.metrics.cache_bytes.set(self._cache.currsize)
        return entry

    async def close(self) -> None:
        await self.source.close()
