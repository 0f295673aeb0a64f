"""Ingest: log objects in the log store -> result objects in the results store.

For each log object (``*.log.gz`` anywhere but under ``leases/`` and ``corrupt/``):

    processed/{YYYYMMDD}/downloads-{name}.json   file_downloads rows, NDJSON
    processed/{YYYYMMDD}/simple-{name}.json      simple_requests rows, NDJSON
    unprocessed/{YYYYMMDD}/{name}.txt            lines that cannot be rows, verbatim

``{name}`` is the object's base name without the ``.log.gz`` suffix, YYYYMMDD the date of its
earliest event (the object's modification date when it has no rows). Empty outputs are not
written. The log object is deleted last.

Exactly once: names and contents depend only on the log object, so a retry after a crash
(or a worker that overran its lease) overwrites identical objects instead of adding new ones,
and publish loads each name at most once. Leases (:mod:`.leases`) keep workers from doing the
same work twice: a worker renews its lease while it converts an object (the conversion runs
in a thread, so the event loop, and the renewal task on it, keep running), and renews once
more right before writing results and before deleting the log object; a worker that finds its
lease taken over stops there and counts the object as busy. A corrupt gzip is copied to
``corrupt/{key}`` in the log store, reported and removed from the queue; the rest of the batch
goes on.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from pythonhosted.config import Settings
from pythonhosted.linehaul import leases
from pythonhosted.linehaul.batch import Converted, CorruptBatch, Counts, convert
from pythonhosted.linehaul.columns import converter_name
from pythonhosted.linehaul.monitor import Monitor, reason
from pythonhosted.linehaul.schedule import pause
from pythonhosted.linehaul.stores import linehaul_stores
from pythonhosted.storage import NotFound, StorageError, Store

log = logging.getLogger(__name__)
SUFFIX = ".log.gz"
CORRUPT = "corrupt/"


@dataclass
class IngestSummary:
    """What one pass did; ``busy`` counts objects another worker held or took over."""

    objects: int = 0
    corrupt: int = 0
    busy: int = 0
    counts: Counts = field(default_factory=Counts)

    def line(self) -> str:
        c = self.counts
        return (
            f"{self.objects} objects, {c.rows} rows, {c.ignored} ignored, "
            f"{c.unprocessable} unprocessable, {self.corrupt} corrupt, {self.busy} busy"
        )


def pending(keys: list[str]) -> list[str]:
    """The log objects among a listing of the log store."""
    return [
        key for key in keys if key.endswith(SUFFIX) and not key.startswith((leases.PREFIX, CORRUPT))
    ]


ROWS = "rows"
"""Metadata of a result file of rows: how many it holds (publish's bookkeeping takes it
from there instead of counting, when the warehouse can read the file in place)."""


def result_keys(
    key: str, converted: Converted, fallback_date: str
) -> dict[str, tuple[bytes, int | None]]:
    """The result objects for log object ``key``: result key -> (contents, rows for the files
    of rows), non-empty ones only."""
    name = key.rsplit("/", 1)[-1].removesuffix(SUFFIX)
    day = (converted.earliest or fallback_date)[:10].replace("-", "")
    simple_rows = converted.simple.count(b"\n")  # the smaller table; a row is a line
    out: dict[str, tuple[bytes, int | None]] = {
        f"processed/{day}/downloads-{name}.json": (
            converted.downloads,
            converted.counts.rows - simple_rows,
        ),
        f"processed/{day}/simple-{name}.json": (converted.simple, simple_rows),
        f"unprocessed/{day}/{name}.txt": (converted.unprocessed, None),
    }
    return {result: value for result, value in out.items() if value[0]}


async def _taken_over(kept: leases.Keeper, summary: IngestSummary) -> bool:
    """Renew before changing a store; True (and the object counted busy) if it was lost."""
    if await kept.confirm():
        return False
    summary.busy += 1
    return True


async def ingest_object(
    logs: Store, results: Store, key: str, summary: IngestSummary, kept: leases.Keeper
) -> None:
    """Turn one claimed log object into results, then delete it.

    ``kept`` holds the lease: each step that changes a store comes after a renewal, so a
    worker that lost the object to another one leaves it to that worker.
    """
    try:
        info = await logs.info(key)
        data = await logs.get_bytes(key)
    except NotFound:  # another worker finished it after our listing
        return
    try:
        converted = await asyncio.to_thread(convert, data)
    except CorruptBatch as exc:
        if await _taken_over(kept, summary):
            return
        log.warning("corrupt log object %s (%s): moved to %s%s", key, exc, CORRUPT, key)
        await logs.put(CORRUPT + key, data)
        await logs.delete(key)
        summary.corrupt += 1
        return
    fallback = info.last_modified.strftime("%Y-%m-%d")
    if await _taken_over(kept, summary):
        return
    for result, (contents, rows) in result_keys(key, converted, fallback).items():
        await results.put(result, contents, metadata=None if rows is None else {ROWS: str(rows)})
    if await _taken_over(kept, summary):
        return
    await logs.delete(key)
    summary.objects += 1
    summary.counts.add(converted.counts)


async def ingest_once(
    logs: Store,
    results: Store,
    *,
    lease_timeout: float,
    owner: str | None = None,
    on_total: Callable[[int], object] | None = None,
    on_object: Callable[[], object] | None = None,
    stop: asyncio.Event | None = None,
) -> IngestSummary:
    """One pass over the log store: every unclaimed log object becomes results.

    Objects are taken in random order so concurrent workers rarely contend for the same one.
    ``on_total``/``on_object`` report progress (a progress bar, or nothing). A set ``stop``
    ends the pass after the object under way (the rest waits for the next pass).
    """
    owner = owner or leases.worker_id()
    keys = pending([item.key for item in await logs.list()])
    random.shuffle(keys)
    if on_total is not None:
        on_total(len(keys))
    summary = IngestSummary()
    for key in keys:
        if stop is not None and stop.is_set():
            break
        lease = await leases.claim(logs, key, owner, lease_timeout)
        if lease is None:
            summary.busy += 1
        else:
            async with leases.Keeper(logs, lease, owner, lease_timeout) as kept:
                await ingest_object(logs, results, key, summary, kept)
            if not kept.lost:  # the new holder's generations are not ours to drop
                await leases.release(logs, key)
        if on_object is not None:
            on_object()
    await leases.sweep(logs, set(keys))
    return summary


async def run_ingest(settings: Settings, stop: asyncio.Event, monitor: Monitor) -> None:
    """Ingest every ``settings.linehaul.ingest_interval`` seconds until ``stop`` is set.

    A background job: a failed pass is logged, reported to ``monitor`` and retried next
    interval; the job itself never ends on an error.
    """
    logs, results, _ = linehaul_stores(settings)
    owner = leases.worker_id()
    timeout = settings.linehaul.lease_timeout
    log.info("linehaul ingest: worker %s, %s converter", owner, converter_name())
    while not stop.is_set():
        try:
            summary = await ingest_once(
                logs,
                results,
                lease_timeout=timeout,
                owner=owner,
                on_total=monitor.pending.set,
                stop=stop,
            )
        except StorageError as exc:
            log.warning("linehaul ingest pass failed: %s", reason(exc))
            monitor.failed("ingest", reason(exc))
        except Exception as exc:  # a defect: keep its traceback, keep the job running
            log.exception("linehaul ingest pass failed")
            monitor.failed("ingest", f"{type(exc).__name__}: {reason(exc)}")
        else:
            monitor.ingested(summary)
            if summary.objects or summary.corrupt:
                log.info("linehaul ingest: %s", summary.line())
        await pause(stop, settings.linehaul.ingest_interval)
