"""The catalog as the index reads it: cached for a while, bounded, one read per missing name.

Every requested name used to stay cached forever (3,000 requests for unknown names made
3,000 entries), and a burst of requests for one uncached project read the catalog once per
request. Entries now go stale after ``ttl`` seconds, the cache is held to ``max_bytes`` (each
entry charged for its records and at least ``ENTRY_BYTES``, so the entry count is bounded
too), least recently used first out, and concurrent misses for one name share one catalog
read. Unknown names are cached too (as no records): a flood of them costs one listing per name
and per ``ttl``, and never more memory than the bound.

An upload, a yank or a delete shows at once (within a second) rather than after ``ttl``:
every request first asks the :class:`~pythonhosted.catalog.CatalogWatch` (a clock comparison;
the store is read at most once a second) which projects changed, and their pages go stale.
A stale project is read again from what the cache holds of it: one listing, and a read of each
record that is new or was rewritten (:func:`~pythonhosted.catalog.read_project`), so a
50,000-file project that takes an upload costs one record read, not 50,000, and its
renderings outlive a ``ttl`` that found nothing changed. Reads of a project that were under
way when it changed are neither kept nor joined by later requests, so no stale page outlives
the change. The root page's list of names is not read again for a change: each changed
project is looked up (does it still have files?) and added or removed, so on a busy index the
whole catalog is listed once per ``ttl`` (longer for a large catalog:
:data:`NAMES_SECONDS_PER_NAME`), not per upload, and meanwhile the list held is served.

A new process does not walk the catalog for its first root page when the catalog's names
index has a usable snapshot (:func:`~pythonhosted.catalog.read_names`): it takes that list and
checks the projects changed since, as above. Every process writes the list it holds as a new
snapshot after a walk and every :data:`SNAPSHOT_EVERY` (once every changed project is
checked; not when another process wrote one meanwhile), so a restart finds one younger than
the change markers kept. It does so whether or not anyone asks for the root page: a keeper
task (:meth:`CatalogPages._keep`) holds the list from the process's start and keeps it, and
the snapshot, up to date every :data:`KEEP_EVERY`. An index that served no root page for
:data:`~pythonhosted.catalog.NAMES_USABLE` used to leave only a snapshot too old to use, and
its next restart walked the whole catalog while uploads went on.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from cachetools import LRUCache

from pythonhosted.boundedlog import failure_log
from pythonhosted.catalog import (
    NAMES_USABLE,
    CatalogWatch,
    FileRecord,
    NamesSnapshot,
    ProjectRead,
    ReadEpochs,
    changed_since,
    has_files,
    newest_names_position,
    projects,
    read_names,
    read_project,
    write_names,
)
from pythonhosted.coalesce import Coalescer
from pythonhosted.index.rendered import Source
from pythonhosted.storage import StorageError, Store

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a cached name costs at least (key, entry, the cache's own bookkeeping), and each record
# more (the record, its listing tag, its slots in the entry's dict and list) besides its
# filename, held twice (as itself and in its path); measured with tracemalloc: 324 bytes per
# entry of an unknown name, 1,321 per record of a wheel with a 63-character name and every
# optional field set (charged 1,326). A fixed 1,152 a record under-counted long wheel names.
ENTRY_BYTES = 384
RECORD_BYTES = 1200
# Past this many changed projects to check, the root page lists the catalog again instead
# (one delimiter listing) of asking about each (a bulk upload of 100,000 new projects).
MAX_UNSURE = 256
# The root page's whole listing is kept at least this long per name it holds (and at least
# ``ttl``), counted from the walk the list comes from (snapshots carry when it was): listing a
# million projects took 14-24 s of CPU (bench/index_root.py, load 15-20), and redone every
# ``ttl`` (60 s), each new list rendered again (the HTML: 2.4 s of CPU), it kept a core a third
# busy and /_health waited up to 3 s. Changes show within a second whatever this is (the
# watch's markers), and the snapshots carry them across restarts: the walk again only catches
# a change whose marker was never written (an upload's process killed between its record and
# its marker, a record put or removed by hand). That is rare, and the list served meanwhile
# only lacks (or keeps) that project on the root page, so the walk is made rare: a million
# names every ~5.6 hours, each process (a walk is 8-16 s of CPU, mostly the kernel's: ~0.06 %
# of a core; every ~17 minutes it was ~1 %, BENCHMARKS.md); 3,000 names or fewer: every ``ttl``.
NAMES_SECONDS_PER_NAME = 0.02
# How often a process writes the list it holds as the catalog's names snapshot (when it
# changed): well within NAMES_USABLE, so a restart finds one it can use.
SNAPSHOT_EVERY = NAMES_USABLE / 4
# How often the keeper brings the list up to date (and so the snapshot) when no root request
# does. Each time: a look at the markers, a check of each changed project, and, when due, a
# listing of the snapshots and one written unless another process wrote one within
# SNAPSHOT_EVERY (a million names: ~0.1 s of CPU, 2.5 MB).
KEEP_EVERY = SNAPSHOT_EVERY


def _keep(record: FileRecord) -> FileRecord:
    return record


@dataclass(slots=True)
class _Entry:
    """One project as read: its records (the list renderings are made from) and what the
    next read needs to read only what changed. ``fresh_until`` 0 once the project changed."""

    read: ProjectRead[FileRecord]
    records: Source[FileRecord]
    fresh_until: float
    weight: int  # estimated bytes, for the cache's bound


def _weight(records: list[FileRecord]) -> int:
    names = sum(len(record.filename) for record in records)
    return ENTRY_BYTES + RECORD_BYTES * len(records) + 2 * names


def _cost(entry: _Entry) -> int:
    return entry.weight


class CatalogPages:
    def __init__(
        self, store: Store, ttl: float, max_bytes: int, watch: CatalogWatch | None = None
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.watch = watch
        self._pages: LRUCache[str, _Entry] = LRUCache(maxsize=max_bytes, getsizeof=_cost)
        self._epochs = ReadEpochs()
        self._reading: Coalescer[tuple[tuple[int, int], str], _Entry] = Coalescer()
        self._names: tuple[float, list[str]] | None = None  # (expiry, names) for the root page
        self._names_generation = 0  # one more when the watch says anything may have changed
        self._unsure: set[str] = set()  # changed projects the names were not checked for
        self._listing: Coalescer[int, tuple[set[str], float, int, list[str]]] = Coalescer()
        self._checking: Coalescer[None, None] = Coalescer()
        self._loading: Coalescer[None, None] = Coalescer()
        self._snapshot_tried = False
        # time.time_ns() of: what the held names reflect (every change made before it, once
        # the changed projects are checked); the newest look whose changes were taken; the
        # newest snapshot this process wrote or read.
        self._names_ns = 0
        self._looked_ns = 0
        self._snapshot_ns = 0
        self._walked_ns = 0  # when the walk the held list comes from began
        self._writing: asyncio.Task[object] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._too_big = failure_log(log, "index cache")
        self._failed = failure_log(log, "index names")

    async def records(self, name: str) -> list[FileRecord]:
        """Every file of the project ``name`` (normalised); empty for an unknown name.

        A project that changed (or outlived ``ttl``) is read again from what the cache held
        of it: one listing and the records that changed, not every record.
        """
        await self._forget_changed()
        cached = self._pages.get(name)
        if cached is not None and cached.fresh_until > time.monotonic():
            return cached.records
        epoch = self._epochs.of(name)
        entry = await self._reading.run((epoch, name), lambda: self._read(name, cached))
        # One larger than the whole cache is not kept, nor one read before a change.
        if entry.weight > self._pages.maxsize:
            self._too_big.note(
                logging.WARNING,
                "too big",
                "index cache too small for %s: its %d files need ~%d bytes, more than "
                "index.cache_max_bytes (%d); each request for it reads it all again",
                name,
                len(entry.records),
                entry.weight,
                self._pages.maxsize,
            )
        elif epoch == self._epochs.of(name):
            self._pages[name] = entry
        return entry.records

    async def _read(self, name: str, previous: _Entry | None) -> _Entry:
        fresh_until = time.monotonic() + self.ttl
        before = previous.read if previous is not None else None
        read = await read_project(self.store, name, _keep, before)
        if previous is not None and read.kept is previous.read.kept:
            # Nothing changed: its renderings stay valid.
            return _Entry(read, previous.records, fresh_until, previous.weight)
        records = Source(read.values)  # one list, shared and kept
        return _Entry(read, records, fresh_until, _weight(records))

    async def project_names(self) -> list[str]:
        """Every project's normalised name (the root page lists the whole catalog)."""
        await self._forget_changed()
        names = self._names[1] if self._names is not None else []
        if len(self._unsure) > MAX_UNSURE:
            self._names = None  # cheaper listed again than checked one by one
        if self._names is None and (not self._snapshot_tried or self._loading.busy(None)):
            # (joined while under way: a request at the keeper's start walked beside it)
            await self._loading.run(None, self._load_snapshot)
        if self._names is None:
            names = await self._walk()
        elif self._names[0] <= time.monotonic() and not self._listing.busy(self._names_generation):
            # Served as held (kept up to date by the markers) while the walk runs.
            self._background(self._walk())
        if self._unsure:
            await self._checking.run(None, self._check_unsure)
        if self._names is None:
            return names  # (listed before anything may have changed: this request only)
        if not self._unsure and not self._checking.busy(None):  # (none popped, unchecked)
            self._snapshot_if_due()
        return self._names[1]

    async def _walk(self) -> list[str]:
        """The whole list, listed again, kept unless something may have changed meanwhile."""
        generation = self._names_generation
        listing = self._listing.run(generation, lambda: self._background(self._list_names()))
        covered, began, began_ns, names = await listing
        expiry = began + max(self.ttl, NAMES_SECONDS_PER_NAME * len(names))
        if generation != self._names_generation:
            return names  # listed before anything may have changed: this request only
        if self._names_stale():
            self._names = (expiry, names)
            self._unsure -= covered
            self._names_ns = max(began_ns, self._names_ns)
            self._walked_ns = began_ns
        return names

    async def _load_snapshot(self) -> None:
        """The list from the catalog's newest names snapshot and the changes since (one
        listing of the markers), when the watch is following the markers (it reports every
        change after this); none usable: the walk. Tried once per process."""
        if self.watch is None or not self.watch.started:
            return
        self._snapshot_tried = True
        generation = self._names_generation
        try:
            snapshot = await read_names(self.store)
            caught_up_ns = time.time_ns()
            changed = await changed_since(self.store, snapshot.position_ns) if snapshot else set()
        except StorageError as exc:
            log.warning("catalog names snapshot unreadable, listing the catalog: %s", exc)
            return
        if snapshot is None or generation != self._names_generation or self._names is not None:
            return
        if len(self._unsure | changed) > MAX_UNSURE:
            return  # cheaper listed again than checked one by one
        walked_ago = (time.time_ns() - snapshot.walked_ns) / 1e9
        keep = max(self.ttl, NAMES_SECONDS_PER_NAME * len(snapshot.names)) - walked_ago
        self._names = (time.monotonic() + max(0.0, keep), Source(snapshot.names))
        self._unsure |= changed
        self._names_ns = caught_up_ns
        self._snapshot_ns = snapshot.position_ns
        self._walked_ns = snapshot.walked_ns

    def _snapshot_if_due(self) -> None:
        """Write the held list as the catalog's names snapshot when the last one this process
        wrote or read is :data:`SNAPSHOT_EVERY` older than what the list reflects (all its
        changed projects checked): a new process then reads it instead of walking."""
        as_of = max(self._names_ns, self._looked_ns)
        if self._names is None or as_of - self._snapshot_ns < SNAPSHOT_EVERY * 1e9:
            return
        if self._writing is not None and not self._writing.done():
            return
        renewal = self._snapshot_ns != 0  # (none read or written yet: this one is needed)
        self._snapshot_ns = as_of
        snapshot = NamesSnapshot(as_of, self._names[1], self._walked_ns)
        self._writing = self._background(self._write_snapshot(snapshot, renewal))

    async def _write_snapshot(self, snapshot: NamesSnapshot, renewal: bool) -> None:
        """A ``renewal`` is not written when another process wrote a snapshot within
        :data:`SNAPSHOT_EVERY` of this one's position: one a period does, however many
        processes keep theirs (and one found damaged ages out the same way)."""
        try:
            newest = await newest_names_position(self.store) if renewal else 0
            if newest > snapshot.position_ns - SNAPSHOT_EVERY * 1e9:
                return
            await write_names(self.store, snapshot)
        except StorageError as exc:
            log.warning("catalog names snapshot not written: %s", exc)

    def _background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """``work`` in a task of its own, which :meth:`stop` cancels."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failed.note(
                logging.WARNING, "walk", "catalog not listed again: %s", task.exception()
            )

    @property
    def hooks(self) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
        """(start, stop), for the app's lifespan."""
        return self._start, self.stop

    async def _start(self) -> None:
        """Start the keeper (:meth:`_keep`)."""
        self._background(self._keep())

    async def _keep(self) -> None:
        """Hold the root page's list and keep it, and the catalog's names snapshot, up to date
        every :data:`KEEP_EVERY`, as a root request would: a quiet index (no root page asked
        for) still leaves a snapshot a restart can use, and its watch never falls behind the
        markers kept. At the first turn, the newest usable snapshot is read (a million
        names: ~0.15 s of CPU, ~70 MB held), or, when there is none, the catalog walked.
        Cancelled by :meth:`stop`."""
        while True:
            try:
                await self.project_names()
            except StorageError as exc:
                self._failed.note(logging.WARNING, "keep", "catalog names not kept: %s", exc)
            await asyncio.sleep(KEEP_EVERY)

    async def stop(self) -> None:
        """Cancel the walks and writes under way (a walk's process is killed)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    def _names_stale(self) -> bool:
        return self._names is None or self._names[0] <= time.monotonic()

    async def _list_names(self) -> tuple[set[str], float, int, list[str]]:
        """The changed projects it covers (those seen before it began), when it began
        (time.monotonic(), time.time_ns()), and the whole list."""
        covered = set(self._unsure)
        began, began_ns = time.monotonic(), time.time_ns()
        return covered, began, began_ns, Source(await projects(self.store))

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
        self._looked_ns = max(self._looked_ns, changes.looked_ns)
        if changes.everything:
            for entry in self._pages.values():
                entry.fresh_until = 0.0  # read again, from what is held
            self._names = None
            self._names_generation += 1
            self._unsure.clear()
            self._names_ns = 0
        for name in changes.projects:
            changed = self._pages.get(name)
            if changed is not None:
                changed.fresh_until = 0.0
        self._unsure.update(changes.projects)
        self._epochs.advance(changes)

    @property
    def entries(self) -> int:
        return len(self._pages)

    @property
    def bytes(self) -> int:
        return int(self._pages.currsize)
