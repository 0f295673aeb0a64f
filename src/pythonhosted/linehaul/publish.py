"""Publish: result files in the results store -> warehouse tables, each file exactly once.

A pass takes up to ``batch_files`` files under ``processed/`` (oldest day first, so complete
days land before the current one; listed a day at a time), loads them per table in groups of up to
:data:`GROUP_BYTES`, and deletes each group's files once the warehouse has committed them.
The warehouse records loaded names in the same transaction as the rows (see
:mod:`pythonhosted.warehouse`), so a publish killed between load and delete, or a result file
that ingest writes again after a crash, is deleted without being loaded twice. A group that
fails to load is retried file by file; a file that still fails is reported and left in place.

With a files store (``files.primary``), a pass then adds the ``distribution_metadata`` rows
uploads queued there (:mod:`.metadata`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pythonhosted.config import Settings
from pythonhosted.errortext import first_line
from pythonhosted.linehaul.schedule import pause, reason
from pythonhosted.pipeline import (
    BATCH_TIMEOUTS,
    RESULTS,
    ROWS,
    pipeline_stores,
    table_of,
    uploads_url,
)
from pythonhosted.storage import NotFound, Store, open_store
from pythonhosted.storage.stores import Listed
from pythonhosted.threads import background
from pythonhosted.warehouse import LoadResult, LocalFile, Warehouse, open_warehouse

if TYPE_CHECKING:
    from pythonhosted.linehaul.monitor import Monitor

log = logging.getLogger(__name__)
GROUP_BYTES = 64 << 20
FETCHES = 16  # result files read (or looked up, in a local store) at once


@dataclass
class PublishSummary:
    files: int = 0
    rows: int = 0
    skipped: int = 0  # loaded before (a retry), deleted without loading
    failed: int = 0
    distributions: int = 0  # distribution_metadata rows added from the upload queue

    def add(self, other: PublishSummary) -> None:
        self.files += other.files
        self.rows += other.rows
        self.skipped += other.skipped
        self.failed += other.failed
        self.distributions += other.distributions

    def line(self) -> str:
        added = f", {self.distributions} distribution rows" if self.distributions else ""
        return (
            f"{self.files} files, {self.rows} rows, {self.skipped} already loaded, "
            f"{self.failed} failed{added}"
        )


async def publish_once(
    results: Store,
    warehouse: Warehouse,
    *,
    batch_files: int,
    on_total: Callable[[int], object] | None = None,
    on_files: Callable[[int], object] | None = None,
    stop: asyncio.Event | None = None,
) -> PublishSummary:
    """Load up to ``batch_files`` result files and delete them; see the module docstring.

    A set ``stop`` ends the pass after the group under way (the rest waits for the next pass).
    """
    listed = await _oldest(results, batch_files)
    summary = PublishSummary()
    groups: dict[str, list[Listed]] = {}
    for item in listed:
        table = table_of(item.key)
        if table is not None:
            groups.setdefault(table, []).append(item)
    if on_total is not None:
        on_total(sum(len(group) for group in groups.values()))
    for table, items in groups.items():
        for chosen in _by_size(items):
            if stop is not None and stop.is_set():
                return summary
            group = await _fetch_all(results, [item.key for item in chosen])
            if group:
                await _load_group(results, warehouse, table, group, summary, on_files)
    return summary


async def _oldest(results: Store, limit: int) -> list[Listed]:
    """The first ``limit`` objects under ``processed/`` in key order (oldest day first),
    listed a day at a time: a pass over a backlog of many days lists the days it takes from,
    not the whole backlog (which made draining it quadratic: every pass listed every file
    left, on S3 a request per 1,000)."""
    found: list[Listed] = []
    for name in await results.list_names(RESULTS):
        entry = f"{RESULTS}{name}"
        day = await results.list(f"{entry}/")
        if not day and table_of(entry) is not None:  # a result file outside the day folders
            try:
                info = await results.info(entry)
            except NotFound:
                continue
            day = [Listed(entry, info.size, info.last_modified)]
        found += day
        if len(found) >= limit:
            break
    return found[:limit]


def _by_size(items: list[Listed]) -> Iterator[list[Listed]]:
    """``items`` in groups of about :data:`GROUP_BYTES` by their listed sizes (each group
    the first ones that reach it, so the bytes in memory stay under it plus one file)."""
    group: list[Listed] = []
    size = 0
    for item in items:
        group.append(item)
        size += item.size
        if size >= GROUP_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


async def _fetch_all(results: Store, keys: list[str]) -> list[Item]:
    """The group's files, :data:`FETCHES` at a time (a store round trip each: one after
    another, a thousand small files waited a thousand); those another publisher took
    meanwhile left out."""
    limit = asyncio.Semaphore(FETCHES)

    async def one(key: str) -> Item | None:
        async with limit:
            try:
                return (await _fetch(results, key))[0]
            except NotFound:  # another publisher took it
                return None

    found = await asyncio.gather(*(one(key) for key in keys))
    return [item for item in found if item is not None]


Item = LocalFile | tuple[str, bytes]  # a file where it lies, or a name and its contents


async def _fetch(results: Store, key: str) -> tuple[Item, int]:
    """A result file and its size: on a local store where it lies, with the row count ingest
    wrote in its metadata (the warehouse reads it in place); elsewhere its contents."""
    if results.local_path(key) is None:
        data = await results.get_bytes(key)
        return (key, data), len(data)
    info = await results.info(key)
    assert info.local_path is not None  # a directory store's objects are files
    hint = info.metadata.get(ROWS, "")
    return LocalFile(key, info.local_path, int(hint) if hint.isdigit() else None), info.size


def _name(item: Item) -> str:
    return item.name if isinstance(item, LocalFile) else item[0]


def _load(warehouse: Warehouse, table: str, group: list[Item]) -> LoadResult:
    local = [item for item in group if isinstance(item, LocalFile)]
    if local:  # a pass reads one store: all of the group, or none, lie on disk
        return warehouse.load_local(table, local)
    return warehouse.load(table, [item for item in group if not isinstance(item, LocalFile)])


async def _load_group(
    results: Store,
    warehouse: Warehouse,
    table: str,
    group: list[Item],
    summary: PublishSummary,
    on_files: Callable[[int], object] | None,
) -> None:
    try:
        outcome = await background(_load, warehouse, table, group)
    except Exception as exc:
        if len(group) > 1:
            for item in group:
                await _load_group(results, warehouse, table, [item], summary, on_files)
            return
        log.error("cannot load %s into %s: %s", _name(group[0]), table, first_line(exc))
        summary.failed += 1
        if on_files is not None:
            on_files(1)
        return
    await results.delete_many(outcome.loaded + outcome.skipped)
    summary.files += len(outcome.loaded)
    summary.skipped += len(outcome.skipped)
    summary.rows += outcome.rows
    if on_files is not None:
        on_files(len(group))


async def publish_with(
    results: Store,
    warehouse_url: str,
    *,
    batch_files: int,
    on_total: Callable[[int], object] | None = None,
    on_files: Callable[[int], object] | None = None,
    stop: asyncio.Event | None = None,
    uploads: Store | None = None,
) -> PublishSummary:
    """One pass with the warehouse opened for the pass only (DuckDB admits one process);
    with ``uploads``, the files store, its queued ``distribution_metadata`` rows too.

    The warehouse is closed in the background pool as it is opened, never on the event loop:
    closing DuckDB's writer checkpoints its write-ahead log and waits for the readers' lock,
    and in ``serve`` every service shares the loop (4.5 s with no service answering, after a
    pass of 1.1M rows, in bench/probe_serve.py). Shielded: a pass cancelled at a stop still
    closes the file before the process exits.
    """
    warehouse = await background(open_warehouse, warehouse_url)
    try:
        summary = await publish_once(
            results,
            warehouse,
            batch_files=batch_files,
            on_total=on_total,
            on_files=on_files,
            stop=stop,
        )
        if uploads is not None:  # the metadata readers (packaging) only for a files store
            from pythonhosted.linehaul.metadata import load_queued

            queue = await load_queued(uploads, warehouse, batch=batch_files, stop=stop)
            summary.distributions = queue.added
        return summary
    finally:
        await asyncio.shield(background(warehouse.close))


async def run_publish(settings: Settings, stop: asyncio.Event, monitor: Monitor) -> None:
    """Publish every ``settings.linehaul.publish_interval`` seconds until ``stop`` is set.

    A background job: a failed pass is logged, reported to ``monitor`` and retried next
    interval. Passes repeat at once while a full batch was loaded, so a backlog drains
    without waiting.
    """
    _, results, warehouse_url = pipeline_stores(settings)
    files = uploads_url(settings)
    uploads = open_store(files, BATCH_TIMEOUTS) if files else None
    batch = settings.linehaul.publish_batch_files
    while not stop.is_set():
        full = False
        try:
            summary = await publish_with(
                results, warehouse_url, batch_files=batch, stop=stop, uploads=uploads
            )
        except Exception as exc:  # a background job: report, retry next interval
            if monitor.failed("publish", reason(exc)):
                log.warning("linehaul publish pass failed: %s", reason(exc))
        else:
            if failed := monitor.published(summary):
                log.info("linehaul publish works again after %d failed passes", failed)
            if summary.files or summary.skipped or summary.failed:
                log.info("linehaul publish: %s", summary.line())
            full = summary.files + summary.skipped >= batch
        if full:
            continue
        await pause(stop, settings.linehaul.publish_interval)
