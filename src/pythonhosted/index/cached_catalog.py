"""The catalog as the index reads it: cached for a while, bounded, one read per missing name.

Every requested name used to stay cached forever (3,000 requests for unknown names made
3,000 entries), and a burst of requests for one uncached project read the catalog once per
request. Entries now expire after ``ttl`` seconds, the cache is held to ``max_bytes`` (each
entry charged for its records and at least ``ENTRY_BYTES``, so the entry count is bounded
too), least recently used first out, and concurrent misses for one name share one catalog
read. Unknown names are cached too (as no records): a flood of them costs one listing per name
and per ``ttl``, and never more memory than the bound.

An upload, a yank or a delete shows at once (within a second) rather than after ``ttl``:
every request first asks the :class:`~pythonhosted.catalog.CatalogWatch` (a clock comparison;
the store is read at most once a second) which projects changed, and their pages are dropped.
Reads of a project that were under way when it changed are neither kept nor joined by later
requests, so no stale page outlives the change. The root page's list of names is not read
again for a change: each changed project is looked up (does it still have files?) and added
or removed, so on a busy index the whole catalog is listed once per ``ttl``, not per upload.
"""

from __future__ import annotations

import bisect
import time

from cachetools import TTLCache

from pythonhosted.catalog import (
    CatalogWatch,
    FileRecord,
    ReadEpochs,
    has_files,
    project_records,
    projects,
)
from pythonhosted.coalesce import Coalescer
from pythonhosted.index.rendered import Source
from pythonhosted.storage import Store

# What a cached name costs at least (key, list, the cache's own bookkeeping), and each record
# more; measured with tracemalloc: 324 bytes per entry of an unknown name, 1,100 per record
# (a wheel's, with every optional field set).
ENTRY_BYTES = 384
RECORD_BYTES = 1152
# Past this many changed projects to check, the root page lists the catalog again instead
# (one delimiter listing) of asking about each (a bulk upload of 100,000 new projects).
MAX_UNSURE = 256


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
        self._epochs = ReadEpochs()
        self._reading: Coalescer[tuple[tuple[int, int], str], list[FileRecord]] = Coalescer()
        self._names: tuple[float, list[str]] | None = None  # (expiry, names) for the root page
        self._names_generation = 0  # one more when the watch says anything may have changed
        self._unsure: set[str] = set()  # changed projects the names were not checked for
        self._listing: Coalescer[int, tuple[set[str], list[str]]] = Coalescer()
        self._checking: Coalescer[None, None] = Coalescer()

    async def records(self, name: str) -> list[FileRecord]:
        """Every file of the project ``name`` (normalised); empty for an unknown name."""
        await self._forget_changed()
        cached = self._pages.get(name)
        if cached is not None:
            return cached
        epoch = self._epochs.of(name)
        records = await self._reading.run((epoch, name), lambda: self._read(name))
        # One larger than the whole cache is not kept, nor one read before a change.
        if _cost(records) <= self._pages.maxsize and epoch == self._epochs.of(name):
            self._pages[name] = records
        return records

    async def _read(self, name: str) -> list[FileRecord]:
        return Source(await project_records(self.store, name))  # one list, shared and kept

    async def project_names(self) -> list[str]:
        """Every project's normalised name (the root page lists the whole catalog)."""
        await self._forget_changed()
        names = self._names[1] if self._names is not None else []
        if len(self._unsure) > MAX_UNSURE:
            self._names = None  # cheaper listed again than checked one by one
        if self._names_stale():
            generation = self._names_generation
            expiry = time.monotonic() + self.ttl
            covered, names = await self._listing.run(generation, self._list_names)
            if generation != self._names_generation:
                return names  # listed before anything may have changed: this request only
            if self._names_stale():
                self._names = (expiry, names)
                self._unsure -= covered
        if self._unsure:
            await self._checking.run(None, self._check_unsure)
        return self._names[1] if self._names is not None else names

    def _names_stale(self) -> bool:
        return self._names is None or self._names[0] <= time.monotonic()

    async def _list_names(self) -> tuple[set[str], list[str]]:
        """The whole list, and the changed projects it covers (those seen before it began)."""
        covered = set(self._unsure)
        return covered, Source(await projects(self.store))

    async def _check_unsure(self) -> None:
        """Add or remove the changed projects: one small listing each."""
        while self._unsure and self._names is not None:
            name = self._unsure.pop()
            try:
                present = await has_files(self.store, name)
            except BaseException:
                self._unsure.add(name)  # still unsure: the next request tries again
                raise
            if self._names is None:
                return
            expiry, names = self._names
            at = bisect.bisect_left(names, name)
            listed = at < len(names) and names[at] == name
            if present and not listed:
                names = Source([*names[:at], name, *names[at:]])
            elif listed and not present:
                names = Source(names[:at] + names[at + 1 :])
            self._names = (expiry, names)

    async def _forget_changed(self) -> None:
        if self.watch is None:
            return
        changes = await self.watch.changes()
        if changes.everything:
            self._pages.clear()
            self._names = None
            self._names_generation += 1
            self._unsure.clear()
        for name in changes.projects:
            self._pages.pop(name, None)
        self._unsure.update(changes.projects)
        self._epochs.advance(changes)

    @property
    def entries(self) -> int:
        return len(self._pages)

    @property
    def bytes(self) -> int:
        return int(self._pages.currsize)
