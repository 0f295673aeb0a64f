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
- The watermark is compared by value: the cache asks with the current one (the oldest batch
  hour in flight, else the hour after the latest batch loaded), and an answer showing another
  is computed again. A publish every 15 minutes moves it about once an hour (when the last
  batch of the oldest hour in flight is loaded), so the answers over complete days (home,
  compare) stay through the other publishes of the hour, ETag and all; a boolean
  "shows the watermark" made every one of them stale at every publish.

A version whose change is not known (a warehouse from an older release, one published before
the reader started and no longer kept, a ClickHouse warehouse, which records none) changes
everything, as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime

import duckdb

from pythonhosted.warehouse.rollups import CHANGES

EVERY_DAY = date.max.toordinal()
"""An answer's last day when it reads every day (open-ended: an all-time total)."""
NO_DAY = EVERY_DAY + 1
"""A publish's first day when it touched no day's downloads (uploads, a table without them)."""
KEPT = 10_000
"""Versions whose changes are kept (about 100 days of publishes every 15 minutes); an answer
cached under an older one is computed again."""


@dataclass
class Reads:
    """What an answer read (see the module doc)."""

    last_day: int = 0  # ordinal; 0: no day of downloads
    uploads: bool = False
    volatile: bool = False
    watermark: datetime | None = None  # the one it shows (None: none shown)


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


def days(end: date | None) -> None:
    """The answer reads downloads up to ``end`` (None: every day)."""
    reads = _reads.get()
    if reads is not None:
        last = EVERY_DAY if end is None else end.toordinal()
        reads.last_day = max(reads.last_day, last)


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


# Per data version v: the earliest day's ordinal and whether uploads changed in (v, top].
_Since = dict[int, tuple[int, bool]]


class Changes:
    """The changes of the data versions this reader has seen, folded per version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[int, tuple[int, bool]] = {}  # version -> (first day, uploads)
        self._view: tuple[int, _Since] = (-1, {})  # top version, and the folds up to it

    def read(self, con: duckdb.DuckDBPyConnection, version: int) -> None:
        """Read the changes of the versions after those known up to ``version`` (the data
        version just read on ``con``). Any thread; concurrent reads merge."""
        top = self._view[0]
        rows: list[tuple[int, date | None, bool]] = []
        if 0 <= top < version:
            try:
                rows = con.execute(
                    f"SELECT version, first_day, uploads FROM {CHANGES} "
                    "WHERE version > ? AND version <= ?",
                    [top, version],
                ).fetchall()
            except duckdb.CatalogException:  # an older release's warehouse: none known
                rows = []
        with self._lock:
            top = self._view[0]
            if version < top:  # another warehouse file: nothing known of its history
                self._rows.clear()
            elif version == top:
                return
            for number, first_day, added in rows:
                if number > top:
                    self._rows[number] = (first_day.toordinal() if first_day else NO_DAY, added)
            for number in sorted(self._rows)[:-KEPT]:
                del self._rows[number]
            self._view = (version, self._fold(version))

    def _fold(self, top: int) -> _Since:
        """Per version below ``top`` whose every later change is known: what changed since."""
        since: _Since = {}
        first, added = NO_DAY, False
        number = top
        while number in self._rows:
            day, uploads_added = self._rows[number]
            first, added = min(first, day), added or uploads_added
            number -= 1
            since[number] = (first, added)
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
    ) -> bool:
        """Whether an answer of ``version`` (which read through ``last_day``, showed a latest
        release if ``uploads``, something any publish moves if ``vol``, the watermark
        ``shown`` if not None) is the same at ``current``, whose watermark is ``watermark``
        (None: not known)."""
        top, since = self._view
        if vol or top != current or (shown is not None and shown != watermark):
            return False
        changed = since.get(version)
        if changed is None:
            return False
        first, added = changed
        return first > last_day and not (uploads and added)
