"""The parts of answers over complete days, kept across the publishes that add only later
days: after a publish of today's rows, a project's page costs only today's part.

Why: a project's page, its summary and its badge's all-time total count today's downloads,
so every publish of today's rows (24 or more a day) made them stale (:mod:`.changes`), and
each was computed again from the rollups: every day's totals, the top versions and the
breakdowns of its range (a cold page: 65-110 ms of CPU at 50M rows, BENCHMARKS.md) for a
change that moved one number. Such a question is now asked in two parts, composed by its
caller (:mod:`.data`, :mod:`.pages`): its *settled part*, over the days up to the last
complete one, kept here across the data versions that touched no day it read (as the
answer cache keeps answers, :meth:`.changes.Changes.kept`: a late batch of yesterday's rows
of a few other projects keeps it too), and the part after it, today's
few rollup rows of one project, read every time.

:func:`using`, around an answer's computation in its worker thread, says which store and
data version the parts inside it belong to; outside it (the CLI, a test of :mod:`.data`)
:func:`part` just computes. What a part read (:class:`.changes.Reads`) is noted for the
answer too, computed or kept, so the answer is kept or computed again as before. A part
that read a day after the last complete one (a page with today's partial day), or anything
else a publish moves, is not kept: the next publish of downloads would change it.

Parts are kept pickled, as plain tuples: a page's breakdowns are thousands of tuples, which
every full collection of the garbage collector (on the event loop) would walk if they were
kept as objects (:mod:`.answers`).
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import date
from typing import TypeVar, cast

from prometheus_client import Counter

from pythonhosted.stats_web import changes
from pythonhosted.stats_web.answers import ENTRY_BYTES
from pythonhosted.stats_web.changes import Changes, Reads

T = TypeVar("T")
# version, bytes charged, the pickled part, its last day read, whether it read uploads, the
# project whose downloads it read (changes.Reads.project)
_Entry = tuple[int, int, bytes, int, bool, str | None]


class Parts:
    """Settled parts by key, bounded in bytes (least recently used goes first). Used by the
    worker threads, so under a lock; counted in ``computed`` and ``reused``."""

    def __init__(self, max_bytes: int, computed: Counter, reused: Counter) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.computed = computed
        self.reused = reused
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, key: tuple[object, ...], version: int, changes: Changes
    ) -> tuple[bytes, Reads] | None:
        """The part of ``version`` (pickled) and what it read: kept under it, or under an
        older one of which nothing it read changed since."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            number, size, body, last_day, uploads, project = found
            if number != version:
                if not changes.kept(number, version, last_day, uploads, False, project=project):
                    return None
                self._entries[key] = (version, size, body, last_day, uploads, project)
            self._entries.move_to_end(key)
            return body, Reads(last_day, uploads, project=project)

    def put(self, key: tuple[object, ...], version: int, body: bytes, reads: Reads) -> None:
        text = sum(len(item) for item in key if isinstance(item, str | bytes))
        size = ENTRY_BYTES + text + len(body)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._entries[key] = (version, size, body, reads.last_day, reads.uploads, reads.project)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self.bytes -= dropped[1]


_using: ContextVar[tuple[Parts, int, Changes, int] | None] = ContextVar(
    "stats_web_settled", default=None
)


@contextlib.contextmanager
def using(parts: Parts, version: int, versions: Changes, through: date) -> Iterator[None]:
    """The parts computed inside belong to data version ``version`` (whose changes
    ``versions`` knows), kept in ``parts`` if they read no day after ``through``, the last
    complete day."""
    token = _using.set((parts, version, versions, through.toordinal()))
    try:
        yield
    finally:
        _using.reset(token)


def part(key: tuple[object, ...], compute: Callable[[], T]) -> T:
    """The settled part ``key`` names (every argument ``compute`` is called with): kept,
    else computed and kept."""
    found = _using.get()
    if found is None:
        return compute()
    parts, version, versions, through = found
    kept = parts.get(key, version, versions)
    if kept is not None:
        body, reads = kept
        changes.note(reads)
        parts.reused.inc()
        return cast(T, pickle.loads(body))
    with changes.recording() as reads:
        value = compute()
    changes.note(reads)
    parts.computed.inc()
    if reads.last_day <= through and not reads.volatile and reads.watermark is None:
        parts.put(key, version, pickle.dumps(value, pickle.HIGHEST_PROTOCOL), reads)
    return value
