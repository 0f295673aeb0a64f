"""Writing the docs store: ``docs upload`` (replace a project's site) and ``docs redirect``.

What an upload guarantees: the whole source is checked first (:mod:`.bundle`: names, file
kinds, counts and inflated sizes), so a refused source writes nothing. The files go to a new
site folder, every object written whole, small files in one request and larger ones streamed
in parts, so memory stays bounded whatever the sizes; only when all are there does the
project's pointer switch to it (:mod:`.sites`). So readers see the old site or the new one,
never a mix; an upload that fails or is killed part-way leaves the old site served, and what
it wrote is removed as it fails (after a kill -9, by a later upload once
``docs_keep_unfinished`` has passed). Two uploads of one project at once each write a whole
site, and the pointer names one of them. After the switch, sites replaced more than
``docs_keep_replaced`` ago are removed.

``redirects.txt`` edits are read-modify-write of one object: concurrent edits can lose one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pythonhosted.catalog import is_project_name
from pythonhosted.config import ConveyorSettings
from pythonhosted.conveyor.bundle import (
    PIECE,
    Bundle,
    BundleError,
    Member,
    UploadLimits,
    open_bundle,
    pieces,
    read_whole,
)
from pythonhosted.conveyor.redirects import (
    MAX_BYTES,
    REDIRECTS_KEY,
    MalformedRedirects,
    Redirect,
    RedirectFile,
    dump_redirects,
    parse_redirects,
    read_redirects_file,
)
from pythonhosted.conveyor.sites import (
    BadPointer,
    Pointer,
    Retention,
    load_pointer,
    new_site,
    pointer_key,
    removable,
    site_prefix,
    sites_prefix,
    started_at,
)
from pythonhosted.conveyor.targets import InvalidTarget, check_target
from pythonhosted.storage import NotFound, StorageError, Store

# Small files are read a batch at a time in one thread hop (a hop per file doubled the time
# of a 20,000-file upload), BATCHES batches at once: at most 2 x 16 x 1 MiB held.
WHOLE_BYTES = PIECE  # larger files are streamed, STREAMS at a time
BATCH = 16
BATCHES = 2
STREAMS = 2


class PublishError(ValueError):
    """A bad project name, source or redirect (one line, for the CLI)."""


@dataclass(frozen=True, slots=True)
class Published:
    written: int
    deleted: int


def check_project(project: str) -> str:
    """A project's docs prefix is one path segment: PEP 508's name rule keeps out "..", "/"
    and NUL, and its length limit names a site requests can reach (a 300-character name was
    accepted, and no request can name it)."""
    if not is_project_name(project):
        raise PublishError(f"invalid project name {project!r}")
    return project


def retention_of(settings: ConveyorSettings) -> Retention:
    return Retention(settings.docs_keep_replaced, settings.docs_keep_unfinished)


async def upload_docs(
    store: Store, project: str, source: Path, limits: UploadLimits, retention: Retention
) -> Published:
    """Replace ``project``'s docs with the files in ``source`` (see the module docstring)."""
    check_project(project)
    site = new_site(time.time())
    folder = site_prefix(project, site)
    try:
        bundle = await asyncio.to_thread(open_bundle, source, folder.rstrip("/"), limits)
    except BundleError as exc:
        raise PublishError(str(exc)) from None
    try:
        if not bundle.members:
            raise PublishError(f"{bundle.source}: no files to upload")
        await _write_site(store, folder, bundle)
    except BaseException as exc:
        await _remove_quietly(store, folder)
        if isinstance(exc, BundleError):
            raise PublishError(str(exc)) from None
        raise
    finally:
        bundle.close()
    await _switch(store, project, site)
    return Published(len(bundle.members), await _remove_old(store, project, retention))


async def _write_site(store: Store, folder: str, bundle: Bundle) -> None:
    """Every file of ``bundle`` under ``folder``, a few at a time.

    After a failure no new write starts, and the ones under way are waited for (a cancelled
    store write still lands: obstore's request runs on without its Python awaitable), so
    that once this raises, the folder is only what is written and can be removed whole."""
    batches, streams = asyncio.Semaphore(BATCHES), asyncio.Semaphore(STREAMS)
    failures: list[Exception] = []

    async def put_small(batch: list[Member]) -> None:
        async with batches:
            if failures:
                return
            try:
                data = await asyncio.to_thread(lambda: [read_whole(bundle, item) for item in batch])
            except Exception as exc:
                failures.append(exc)
                return
            puts = (
                store.put(folder + item.name, body) for item, body in zip(batch, data, strict=True)
            )
            results = await asyncio.gather(*puts, return_exceptions=True)
            failures.extend(result for result in results if isinstance(result, Exception))

    async def put_large(member: Member) -> None:
        async with streams:
            if failures:
                return
            try:
                await store.put_stream(folder + member.name, _streamed(bundle, member))
            except Exception as exc:
                failures.append(exc)

    small = [item for item in bundle.members if item.size <= WHOLE_BYTES]
    await asyncio.gather(
        *(put_small(small[start : start + BATCH]) for start in range(0, len(small), BATCH)),
        *(put_large(item) for item in bundle.members if item.size > WHOLE_BYTES),
    )
    if failures:
        raise failures[0]


async def _remove_quietly(store: Store, folder: str) -> None:
    """Remove what a failed upload wrote, if the store lets us (else a later upload does, once
    ``docs_keep_unfinished`` has passed). Shielded: an interrupted upload (Ctrl-C cancels it)
    still cleans up."""

    async def remove() -> None:
        keys = [item.key for item in await store.list(folder)]
        await store.delete_many(keys)

    with contextlib.suppress(StorageError):
        await asyncio.shield(remove())


async def read_pointer(store: Store, project: str) -> Pointer | None:
    """``project``'s pointer; None when it has none, or one that is not a pointer (the next
    upload replaces it, and the sites it named are removed as unfinished ones)."""
    try:
        return load_pointer(await store.get_bytes(pointer_key(project)))
    except (NotFound, BadPointer):
        return None


async def _sites(store: Store, project: str) -> list[str]:
    names = await store.list_names(sites_prefix(project))
    return [name for name in names if started_at(name) is not None]


async def _switch(store: Store, project: str, site: str) -> None:
    """Point ``project`` at ``site``, recording the site it replaces."""
    previous = await read_pointer(store, project)
    pointer = Pointer(site).replacing(previous, time.time(), await _sites(store, project))
    await store.put(pointer_key(project), pointer.dump())


async def _remove_old(store: Store, project: str, retention: Retention) -> int:
    """Remove the sites past their grace period; the number of objects removed.

    The pointer is read again: a concurrent upload may have switched it since."""
    pointer = await read_pointer(store, project)
    if pointer is None:
        return 0
    removed = 0
    for site in removable(pointer, await _sites(store, project), retention, time.time()):
        keys = [item.key for item in await store.list(site_prefix(project, site))]
        await store.delete_many(keys)
        removed += len(keys)
    return removed


async def _streamed(bundle: Bundle, member: Member) -> AsyncIterator[bytes]:
    """``member``'s pieces, each read in a thread so inflating never blocks the loop."""
    reader = pieces(bundle, member)
    try:
        while (piece := await asyncio.to_thread(next, reader, None)) is not None:
            yield piece
    finally:
        reader.close()


async def read_redirects(store: Store, project: str, max_bytes: int = MAX_BYTES) -> RedirectFile:
    """The stored table (empty when there is none), to edit ``project``'s entry in.

    PublishError when it is malformed, or when a line other than ``project``'s has a target
    the service would refuse (rewriting the file would silently drop it).
    """
    try:
        data, _ = await read_redirects_file(store, max_bytes)
        parsed = parse_redirects(data)
    except NotFound:
        return RedirectFile({})
    except MalformedRedirects as exc:
        raise PublishError(f"{REDIRECTS_KEY} is malformed, fix it first: {exc}") from None
    for refused in parsed.refused:
        if refused.project != project:
            raise PublishError(f"{refused}; fix it first")
    return parsed


async def set_redirect(
    store: Store, project: str, redirect: Redirect | None, max_bytes: int = MAX_BYTES
) -> bool:
    """Add, replace (``redirect``) or remove (None) one entry; False if nothing changed.

    A refused line of ``project``'s own is replaced or removed too: that is how to fix it.
    """
    check_project(project)
    if redirect is not None:
        try:
            check_target(redirect.base_uri)
        except InvalidTarget as exc:
            raise PublishError(f"base URI {exc}") from None
    stored = await read_redirects(store, project, max_bytes)
    table = stored.table
    if table.get(project) == redirect and not stored.refused:
        return False
    if redirect is None:
        table.pop(project, None)
    else:
        table[project] = redirect
    await store.put(REDIRECTS_KEY, dump_redirects(table))
    return True
