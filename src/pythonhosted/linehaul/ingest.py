"""Ingest: log objects in the log store -> result objects in the results store.

For each log object (``*.log.gz`` anywhere but under ``leases/`` and ``corrupt/``):

    processed/{YYYYMMDD}/downloads-{name}.json   file_downloads rows, NDJSON
    processed/{YYYYMMDD}/simple-{name}.json      simple_requests rows, NDJSON
    unprocessed/{YYYYMMDD}/{name}.txt            lines that cannot be rows, verbatim
    unprocessed/{YYYYMMDD}/too-long/{name}.txt   the start of lines over the maximum length

``{name}`` is the object's base name without the ``.log.gz`` suffix, YYYYMMDD the date of its
earliest event (the object's modification date when it has no rows). Empty outputs are not
written. The log object is deleted last.

The object is streamed (:class:`~.batch.ObjectConverter`): read from the store in chunks,
converted in a thread a chunk at a time, and its results written in parts of about
:data:`~.batch.PART_BYTES` as they fill, so memory stays bounded whatever the object's size.
Part 1 has the names above; part N > 1 goes under ``part{N}/`` in the same layout
(``processed/{YYYYMMDD}/part2/downloads-{name}.json``...), dated by its own earliest event; the
base names stay the table's and the batch's. A name cannot hold ``/``, so these never meet
another object's.

Exactly once: names and contents depend only on the log object (parts end where its
decompressed text reaches fixed window boundaries), so a retry after a crash (or a worker
that overran its lease) overwrites identical objects instead of adding new ones, and publish
loads each name at most once. Leases (:mod:`.leases`) keep workers from doing the same work
twice: a worker renews its lease while it converts an object (the conversion runs in a
thread, so the event loop, and the renewal task on it, keep running), and renews once more
right before writing each part and before deleting the log object; a worker that finds its
lease taken over stops there and counts the object as busy.

A damaged object (truncated, garbled, not gzip) gives the results of its lines before the
damage, the line the damage cut is dropped, and the object is copied to ``corrupt/{key}`` in
the log store, reported (lines dropped, compressed bytes left unread) and removed from the
queue; the rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pythonhosted.config import Settings
from pythonhosted.linehaul import leases
from pythonhosted.linehaul.admission import Admission
from pythonhosted.linehaul.batch import DEFAULT_MAX_LINE, Counts, ObjectConverter, Part
from pythonhosted.linehaul.columns import converter_name
from pythonhosted.linehaul.schedule import pause, reason
from pythonhosted.pipeline import (
    CORRUPT,
    ROWS,
    pending,
    pipeline_stores,
    result_files,
    result_name,
    too_long_samples,
)
from pythonhosted.storage import NotFound, ObjectInfo, StorageError, Store
from pythonhosted.threads import background

if TYPE_CHECKING:  # the metrics (prometheus_client) are a running worker's, not a pass's
    from pythonhosted.linehaul.monitor import Monitor

log = logging.getLogger(__name__)
DEFAULT_CONCURRENCY = 8  # objects under way at once (linehaul.ingest_concurrency)


@dataclass
class IngestSummary:
    """What one pass did; ``busy`` counts objects another worker held or took over.

    Of damaged (``corrupt``) objects: ``lost`` lines cut by the damage and dropped,
    ``unreadable`` compressed bytes after it.
    """

    objects: int = 0
    corrupt: int = 0
    busy: int = 0
    counts: Counts = field(default_factory=Counts)
    lost: int = 0
    unreadable: int = 0

    def line(self) -> str:
        c = self.counts
        damage = (
            f" ({self.lost} lines cut, {self.unreadable} bytes unreadable)" if self.corrupt else ""
        )
        return (
            f"{self.objects} objects, {c.rows} rows, {c.ignored} ignored, "
            f"{c.unprocessable} unprocessable{c.extras()}, {self.corrupt} corrupt{damage}, "
            f"{self.busy} busy"
        )


def result_day(earliest: str | None, fallback_date: str) -> str:
    """``YYYYMMDD`` of the earliest row, else of ``fallback_date`` (``YYYY-MM-DD...``)."""
    return (earliest or fallback_date)[:10].replace("-", "")


def result_keys(key: str, part: Part, fallback_date: str) -> dict[str, tuple[bytes, int | None]]:
    """The result objects of one part of log object ``key``: result key -> (contents, rows
    for the files of rows), non-empty ones only."""
    downloads, simple, unprocessed = result_files(
        result_name(key), result_day(part.earliest, fallback_date), part.number
    )
    out: dict[str, tuple[bytes, int | None]] = {
        downloads: (part.downloads, part.download_rows),
        simple: (part.simple, part.simple_rows),
        unprocessed: (part.unprocessed, None),
    }
    return {result: value for result, value in out.items() if value[0]}


def samples_key(key: str, day: str) -> str:
    """Where the start of an object's over-long lines goes."""
    return too_long_samples(result_name(key), day)


async def _taken_over(kept: leases.Keeper, summary: IngestSummary) -> bool:
    """Renew before changing a store; True (and the object counted busy) if it was lost."""
    if await kept.confirm():
        return False
    summary.busy += 1
    return True


class _Writer:
    """Writes an object's parts as they come, each after a lease renewal."""

    def __init__(
        self,
        results: Store,
        key: str,
        info: ObjectInfo,
        kept: leases.Keeper,
        summary: IngestSummary,
    ) -> None:
        self.results = results
        self.key = key
        self.fallback = info.last_modified.strftime("%Y-%m-%d")
        self.kept = kept
        self.summary = summary
        self.day = result_day(None, self.fallback)  # of the last part written

    async def write(self, part: Part) -> bool:
        """Write ``part``; False, nothing written, once the lease is lost."""
        if await _taken_over(self.kept, self.summary):
            return False
        for result, (contents, rows) in result_keys(self.key, part, self.fallback).items():
            metadata = None if rows is None else {ROWS: str(rows)}
            await self.results.put(result, contents, metadata=metadata)
        self.day = result_day(part.earliest, self.fallback)
        return True


async def ingest_object(
    logs: Store,
    results: Store,
    key: str,
    summary: IngestSummary,
    kept: leases.Keeper,
    max_line: int = DEFAULT_MAX_LINE,
) -> None:
    """Turn one claimed log object into results, then delete it (or move it aside when it
    is damaged).

    ``kept`` holds the lease: each step that changes a store comes after a renewal, so a
    worker that lost the object to another one leaves it to that worker.
    """
    try:
        info = await logs.info(key)
        chunks = await logs.read(key)
    except NotFound:  # another worker finished it after our listing
        return
    converter = ObjectConverter(max_line)
    writer = _Writer(results, key, info, kept, summary)
    async with aclosing(chunks):
        async for chunk in chunks:
            parts = converter.feed(chunk)  # converts in a thread, a part at a time:
            while (part := await background(next, parts, None)) is not None:
                if not await writer.write(part):
                    return
            if kept.lost:  # a renewal found the object taken over: leave it to the taker
                summary.busy += 1
                return
            if converter.damage is not None:
                break
    if not await writer.write(await background(converter.finish)):
        return
    if converter.samples:
        if await _taken_over(kept, summary):
            return
        sample = b"".join(line + b"\n" for line in converter.samples)
        await results.put(samples_key(key, writer.day), sample)
    if await _taken_over(kept, summary):
        return
    summary.counts.add(converter.counts)
    if converter.damage is None:
        await logs.delete(key)
        summary.objects += 1
        return
    await _set_aside(logs, key, info.size, converter, summary)


async def _set_aside(
    logs: Store, key: str, size: int, converter: ObjectConverter, summary: IngestSummary
) -> None:
    """Move a damaged object to ``corrupt/`` and report what its damage cost."""
    assert converter.damage is not None
    unreadable = max(size - converter.damage.offset, 0)
    lines = converter.counts.lines()
    log.warning(
        "corrupt log object %s (%s) at compressed byte %d of %d: %d lines read before it, "
        "%d cut by it, %d bytes unreadable after it (about %d lines); moved to %s%s",
        key,
        converter.damage.reason,
        converter.damage.offset,
        size,
        lines,
        converter.dropped_lines,
        unreadable,
        lines * unreadable // max(converter.damage.offset, 1),
        CORRUPT,
        key,
    )
    await logs.copy(key, CORRUPT + key)
    await logs.delete(key)
    summary.corrupt += 1
    summary.lost += converter.dropped_lines
    summary.unreadable += unreadable


async def ingest_once(
    logs: Store,
    results: Store,
    *,
    lease_timeout: float,
    owner: str | None = None,
    on_total: Callable[[int], object] | None = None,
    on_object: Callable[[], object] | None = None,
    stop: asyncio.Event | None = None,
    max_line_length: int = DEFAULT_MAX_LINE,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> IngestSummary:
    """One pass over the log store: every unclaimed log object becomes results.

    Objects are taken in random order so concurrent workers rarely contend for the same one,
    up to ``concurrency`` at once as their sizes allow (:mod:`.admission`). ``on_total``/
    ``on_object`` report progress (a progress bar, or nothing). A set ``stop`` ends the pass
    after the objects under way (the rest waits for the next pass). Lines longer than
    ``max_line_length`` bytes are cut (counted, their start kept aside). A store error ends
    the pass, the objects under way cancelled (their leases let go where the log store
    allows, else they expire; the next pass redoes them).
    """
    owner = owner or leases.worker_id()
    listed = {item.key: item.size for item in await logs.list()}
    keys = pending(list(listed))
    random.shuffle(keys)
    if on_total is not None:
        on_total(len(keys))
    summary = IngestSummary()
    admission = Admission(concurrency)
    queue = iter(keys)
    abandoned: list[str] = []  # objects under way when the pass failed, their leases held

    async def work() -> None:
        for key in queue:  # one iterator shared by the workers: each key is taken once
            if stop is not None and stop.is_set():
                return
            async with admission.admit(listed[key]):
                if stop is not None and stop.is_set():
                    return
                await _claimed(
                    logs, results, key, owner, lease_timeout, summary, max_line_length, abandoned
                )
            if on_object is not None:
                on_object()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(keys))):
                group.create_task(work())
    except BaseExceptionGroup as failed:  # the first failure, as a pass one at a time raised
        await _let_go(logs, abandoned)
        raise failed.exceptions[0] from None
    await leases.sweep(logs, set(keys))
    return summary


async def _claimed(
    logs: Store,
    results: Store,
    key: str,
    owner: str,
    lease_timeout: float,
    summary: IngestSummary,
    max_line_length: int,
    abandoned: list[str],
) -> None:
    """Claim ``key`` and ingest it under the lease, or count it busy; on a failure, add it
    to ``abandoned`` while the lease is still ours."""
    lease = await leases.claim(logs, key, owner, lease_timeout)
    if lease is None:
        summary.busy += 1
        return
    kept = leases.Keeper(logs, lease, owner, lease_timeout)
    try:
        async with kept:
            await ingest_object(logs, results, key, summary, kept, max_line_length)
    except BaseException:
        if not kept.lost:
            abandoned.append(key)
        raise
    if not kept.lost:  # the new holder's generations are not ours to drop
        await leases.release(logs, key)


async def _let_go(logs: Store, abandoned: list[str]) -> None:
    """Release the leases of objects a failed pass abandoned (a full or failing results
    store, or another object's failure cancelling them), so the next pass redoes them at
    once: they waited out the whole lease timeout (5 minutes by default) as busy. Results
    already written are redone with the same names and bytes."""
    for key in abandoned:
        try:
            await leases.release(logs, key)
        except StorageError as exc:
            log.warning("cannot let the lease on %s go (%s); it expires", key, reason(exc))


async def run_ingest(settings: Settings, stop: asyncio.Event, monitor: Monitor) -> None:
    """Ingest every ``settings.linehaul.ingest_interval`` seconds until ``stop`` is set.

    A background job: a failed pass is logged, reported to ``monitor`` and retried next
    interval; the job itself never ends on an error.
    """
    logs, results, _ = pipeline_stores(settings)
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
                max_line_length=settings.linehaul.max_line_length,
                concurrency=settings.linehaul.ingest_concurrency,
            )
        except StorageError as exc:
            if monitor.failed("ingest", reason(exc)):
                log.warning("linehaul ingest pass failed: %s", reason(exc))
        except Exception as exc:  # a defect: keep its traceback, keep the job running
            if monitor.failed("ingest", f"{type(exc).__name__}: {reason(exc)}"):
                log.exception("linehaul ingest pass failed")
        else:
            if failed := monitor.ingested(summary):
                log.info("linehaul ingest works again after %d failed passes", failed)
            if summary.objects or summary.corrupt:
                log.info("linehaul ingest: %s", summary.line())
        await pause(stop, settings.linehaul.ingest_interval)
