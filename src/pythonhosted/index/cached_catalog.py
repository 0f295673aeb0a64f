"""The catalog as the index reads it: cached for a while, bounded, one read per missing name.

Every requested name used to stay cached forever (3,000 requests for unknown names made
3,000 entries), and a burst of requests for one uncached project read the catalog once per
request. Entries now expire after ``ttl`` seconds, the cache is held to ``max_bytes`` (each
entry charged for its records and at least ``ENTRY_BYTES``, so the entry count is bounded
too), least recently used first out, and concurrent misses for one name share one catalog
read. Unknown names are cached too (as no records): a flood of them costs one listing per name
and per ``ttl``, and never more memory than the bound.

A yank, a delete or an upload shows at once (within a second) rather than after ``ttl``: every
request first asks the :class:`~pythonhosted.catalog.CatalogWatch` (a clock comparison; the
store is read at most once a second), and a changed catalog empties the cache. Reads that were
already under way when it changed are neither kept nor joined by later requests (each cache
generation has its own reads), so no stale page outlives the change.
"""

from __future__ import annotations

import time

from cachetools import TTLCache

from pythonhosted.catalog import CatalogWatch, FileRecord, project_records, projects
from pythonhosted.coalesce import Coalescer
from pythonhosted.storage import Store

# What a cached name costs at least (key, list, the cache's own bookkeeping), and each record
# more; measured with tracemalloc: 324 bytes per entry of an unknown name, 1,100 per record
# (a wheel's, with every optional field set).
ENTRY_BYTES = 384
RECORD_BYTES = 1152


def _cost(records: list[FileRecord]) -> int:
    return ENTRY_BYTES + RECORD_BYTES * len(records)


class CatalogPages:
    def __init__(
        self, store: Store, ttl: float, max_bytes: int, watch: CatalogWatch | None = None
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.watch = watch
        self._pages: TTLCache[str, list[FileRecord]] = TTLCache(
            maxsize=max_bytes, ttl=ttl, timer=time.monotonic, getsizeof=_cost
        )
        self._generation = 0  # of the cache: one more each time the catalog changed
        self._reading: Coalescer[tuple[int, str], list[FileRecord]] = Coalescer()
        self._names: tuple[float, list[str]] | None = None  # (expiry, names) for the root page
        self._listing: Coalescer[int, list[str]] = Coalescer()

    async def records(self, name: str) -> list[FileRecord]:
        """Every file of the project ``name`` (normalised); empty for an unknown name."""
        await self._forget_if_changed()
        cached = self._pages.get(name)
        if cached is not None:
            return cached
        generation = self._generation
        records = await self._reading.run(
            (generation, name), lambda: project_records(self.store, name)
        )
        # One larger than the whole cache is not kept, nor one read before a change.
        if _cost(records) <= self._pages.maxsize and generation == self._generation:
            self._pages[name] = records
        return records

    async def project_names(self) -> list[str]:
        """Every project's normalised name (the root page lists the whole catalog)."""
        await self._forget_if_changed()
        now = time.monotonic()
        if self._names is not None and self._names[0] > now:
            return self._names[1]
        generation = self._generation
        names = await self._listing.run(generation, lambda: projects(self.store))
        if generation == self._generation:
            self._names = (now + self.ttl, names)
        return names

    async def _forget_if_changed(self) -> None:
        if self.watch is not None and await self.watch.changed():
            self._pages.clear()
            self._names = None
            self._generation += 1

    @property
    def entries(self) -> int:
        return len(self._pages)

    @property
    def bytes(self) -> int:
        return int(self._pages.currsize)
