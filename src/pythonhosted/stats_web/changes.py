"""What an answer read, and what each publish changed: a cached answer outlives the data
versions that changed nothing it read.

Why: every publish (every 15 minutes) bumps the data version, and the answers cached under
the old one were all dropped and computed again; right after a publish, a burst of cheap
requests over a few hundred cold questions shed most of them (503) while the CPU recomputed
answers that had not changed (BENCHMARKS.md). A daytime publish adds today's downloads (and
maybe a late batch of yesterday's); an answer over the complete days up to yesterday that
reads neither is the same answer, with the same ETag.

- While an answer is computed, :func:`recording` notes what it reads (:class:`Reads`): the
  last day of downloads (:func:`days`, called by each question of :mod:`.data`; open-ended,
  as an all-time total, is every day), whether it shows a latest release (:func:`uploads`),
  the completeness watermark it shows (:func:`watermark`), and whether it shows what any
  publish may move without a day of downloads (:func:`volatile`: the list of known project
  names behind a search or an unknown project's 404).
- Each publish records, in its own transaction, the earliest day whose downloads it touched
  and whether it added uploads (``warehouse_changes``, :func:`pythonhosted.warehouse.rollups.bump`).
  :class:`Changes` reads them with the data version and folds them per version, so the cache
  asks in O(1) on the event loop whether anything since an answer's version touched a day up
  to its last, or what else it shows (:meth:`Changes.kept`).
- A late batch (yesterday's CDN logs arriving after midnight: some in every publish of a
  day's first hours) touched a complete day, which every project's answers over complete
  days read, for a few projects. So an answer notes the one project whose downloads it
  read (:func:`days`; :data:`ANY` when several or every project: home, top, compare), and
  a publish whose late part named a few projects (``warehouse_late``) touched every project
  only from its newest day on: an answer of another project over the days before it is
  kept (the settled parts of :mod:`.settled` too): a project's look-up is a dict get and a
  bisection more, under a microsecond (BENCHMARKS.md, "A late batch and the projects it
  touched"). Answers across projects keep the rule above.
- The watermark is compared by value: the cache asks with the current one (the oldest batch
  hour in flight, else the hour after the latest batch loaded), and an answer showing another
  is computed again. A publish every 15 minutes moves it about once an hour (when the last
  batch of the oldest hour in flight is loaded), so the answers over complete days (home,
  compare) stay through the other publishes of the hour, ETag and all; a boolean
  "shows the watermark" made every one of them stale at every publish.

A version whose change is not known (a warehouse from an older release, one published before
the reader started and no longer kept, a ClickHouse warehouse, which records none) changes
everything, as before; one whose late part is not known (no ``warehouse_late`` row: more
projects than the bound, an older release's load) changes every project from its first day.
"""

from __future__ import annotations

import bisect
import contextlib
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime

import duckdb

from pythonhosted.warehouse.rollups import CHANGES, LATE

EVERY_DAY = date.max.toordinal()
"""An answer's last day when it reads every day (open-ended: an all-time total)."""
NO_DAY = EVERY_DAY + 1
"""A publish's first day when it touched no day's downloads (uploads, a table without them)."""
KEPT = 10_000
"""Versions whose changes are kept (about 100 days of publishes every 15 minutes); an answer
cached under an older one is computed again."""
ANY = "*"
"""An answer's project when it read several projects' downloads, or every project's. (A
project of that name would be taken for them: its answers kept by the rule across projects.)"""


@dataclass
class Reads:
    """What an answer read (see the module doc)."""

    last_day: int = 0  # ordinal; 0: no day of downloads
    uploads: bool = False
    volatile: bool = False
    watermark: datetime | None = None  # the one it shows (None: none shown)
    project: str | None = None  # whose downloads it read: one project's, ANY, None: none


def _one(project: str | None, other: str | None) -> str | None:
    """The project of what read ``project``'s and ``other``'s downloads."""
    if project is None or project == other:
        return other
    return project if other is None else ANY


_reads: ContextVar[Reads | None] = ContextVar("stats_web_reads", default=None)


@contextlib.contextmanager
def recording() -> Iterator[Reads]:
    """Note what the answer computed inside reads (in the computing thread)."""
    reads = Reads()
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)


def note(part: Reads) -> None:
    """The answer read what ``part`` did (a part of it computed apart, or kept from an
    earlier computation: :mod:`.settled`)."""
    reads = _reads.get()
    if reads is not None:
        reads.last_day = max(reads.last_day, part.last_day)
        reads.uploads = reads.uploads or part.uploads
        reads.volatile = reads.volatile or part.volatile
        reads.watermark = reads.watermark or part.watermark
        reads.project = _one(reads.project, part.project)


def days(end: date | None, project: str | None = None) -> None:
    """The answer reads downloads up to ``end`` (None: every day) of ``project`` (a PEP 503
    name; None: of every project)."""
    reads = _reads.get()
    if reads is not None:
        last = EVERY_DAY if end is None else end.toordinal()
        reads.last_day = max(reads.last_day, last)
        reads.project = _one(reads.project, project or ANY)


def uploads() -> None:
    """The answer shows a project's latest release."""
    reads = _reads.get()
    if reads is not None:
        reads.uploads = True


def volatile() -> None:
    """The answer shows what any publish may change (project names, coverage's rows)."""
    reads = _reads.get()
    if reads is not None:
        reads.volatile = True


def watermark(shown: datetime | None) -> None:
    """The answer shows ``shown`` as the watermark (None, before any batch was loaded: the
    first publish moves it, so that is :func:`volatile`)."""
    reads = _reads.get()
    if reads is None:
        return
    if shown is None:
        reads.volatile = True
    else:
        reads.watermark = shown


# Per data version v, for (v, top]: the earliest day any change touched, the earliest from
# which every project's downloads may have changed, and whether uploads changed.
_Since = dict[int, tuple[int, int, bool]]
# Per project a late part named: the versions, and their first days, ascending both, each
# the earliest day touched after the version before (see _name). Two tuples of ints, not a
# tuple of pairs: a third of the memory (an entry is a version, and a project has about one
# a day) and a bisection without a key.
_Late = dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
# A version's change: first day, the day from which every project changed, uploads, and the
# projects named by its late part.
_Row = tuple[int, int, bool, tuple[str, ...]]


_NONE: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())


class Changes:
    """The changes of the data versions this reader has seen, folded per version, and the
    projects their late parts named, per project."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[int, _Row] = {}
        # top version, and the folds and late parts up to it: replaced whole, never changed,
        # so a look-up on any thread sees one consistent view without the lock
        self._view: tuple[int, _Since, _Late] = (-1, {}, {})

    def read(self, con: duckdb.DuckDBPyConnection, version: int) -> None:
        """Read the changes of the versions after those known up to ``version`` (the data
        version just read on ``con``). Any thread; concurrent reads merge."""
        top = self._view[0]
        rows: list[tuple[int, date | None, bool, date | None, list[str] | None]] = []
        if 0 <= top < version:
            rows = _changes(con, top, version)
        with self._lock:
            top, _, late = self._view
            if version < top:  # another warehouse file: nothing known of its history
                self._rows.clear()
                late = {}
            elif version == top:
                return
            named: dict[str, list[tuple[int, int]]] = {}
            for number, first_day, added, newest, projects in sorted(rows):
                if number <= top:
                    continue
                first = first_day.toordinal() if first_day else NO_DAY
                every = newest.toordinal() if newest is not None and projects is not None else first
                # one string per name however many versions name it
                names = tuple(sys.intern(project) for project in projects or ())
                self._rows[number] = (first, every, added, names)
                for project in names:
                    _name(_entries(named, late, project), number, first)
            for number in sorted(self._rows)[:-KEPT]:
                for project in self._rows.pop(number)[3]:
                    entries = _entries(named, late, project)
                    entries[:] = [entry for entry in entries if entry[0] > number]
            if named:
                late = dict(late)
                for project, entries in named.items():
                    if entries:
                        late[project] = (tuple(e[0] for e in entries), tuple(e[1] for e in entries))
                    else:
                        del late[project]
            self._view = (version, self._fold(version), late)

    def _fold(self, top: int) -> _Since:
        """Per version below ``top`` whose every later change is known: what changed since."""
        since: _Since = {}
        first, every, added = NO_DAY, NO_DAY, False
        number = top
        while number in self._rows:
            day, from_day, uploads_added, _ = self._rows[number]
            first, every = min(first, day), min(every, from_day)
            added = added or uploads_added
            number -= 1
            since[number] = (first, every, added)
        return since

    def kept(
        self,
        version: int,
        current: int,
        last_day: int,
        uploads: bool,
        vol: bool,
        shown: datetime | None = None,
        watermark: datetime | None = None,
        project: str | None = ANY,
    ) -> bool:
        """Whether an answer of ``version`` (which read through ``last_day`` the downloads of
        ``project``, one project's or :data:`ANY`; showed a latest release if ``uploads``,
        something any publish moves if ``vol``, the watermark ``shown`` if not None) is the
        same at ``current``, whose watermark is ``watermark`` (None: not known)."""
        top, since, late = self._view
        if vol or top != current or (shown is not None and shown != watermark):
            return False
        changed = since.get(version)
        if changed is None:
            return False
        first, every, added = changed
        if uploads and added:
            return False
        if first > last_day:
            return True
        if project is None or project == ANY or every <= last_day:
            return False
        versions, firsts = late.get(project, _NONE)
        after = bisect.bisect_right(versions, version)
        return after == len(versions) or firsts[after] > last_day


def _entries(
    named: dict[str, list[tuple[int, int]]], late: _Late, project: str
) -> list[tuple[int, int]]:
    """The versions whose late part named ``project``, as a list being changed in ``named``."""
    entries = named.get(project)
    if entries is None:
        entries = named[project] = list(zip(*late.get(project, _NONE), strict=True))
    return entries


def _name(entries: list[tuple[int, int]], version: int, first: int) -> None:
    """Note that ``version``'s late part named the project of ``entries`` from day ``first``.

    The older entries whose first day is not earlier go: an answer older than them is older
    than ``version`` too, which touched the project from a day as early. So the first days
    ascend with the versions, the earliest day touched after a version is the first day of
    the first entry after it (one bisection: :meth:`Changes.kept`), and a project has at
    most an entry per day its late parts began on (about one a day)."""
    while entries and entries[-1][1] >= first:
        entries.pop()
    entries.append((version, first))


def _changes(
    con: duckdb.DuckDBPyConnection, top: int, version: int
) -> list[tuple[int, date | None, bool, date | None, list[str] | None]]:
    """The changes of the versions after ``top`` through ``version``, with their late parts
    (newest day and projects; None when not recorded). A warehouse of an older release has
    no late parts, or no changes at all: then none are known."""
    bounds = [top, version]
    try:
        return con.execute(
            f"SELECT c.version, c.first_day, c.uploads, l.newest_day, l.projects FROM {CHANGES} c "
            f"LEFT JOIN {LATE} l ON l.version = c.version WHERE c.version > ? AND c.version <= ?",
            bounds,
        ).fetchall()
    except duckdb.CatalogException:
        pass
    try:
        rows = con.execute(
            f"SELECT version, first_day, uploads FROM {CHANGES} WHERE version > ? AND version <= ?",
            bounds,
        ).fetchall()
    except duckdb.CatalogException:  # an older release's warehouse: none known
        return []
    return [(number, first_day, added, None, None) for number, first_day, added in rows]
