"""Writing the docs store: ``docs upload`` (replace a project's site) and ``docs redirect``.

What an upload guarantees: the whole source is checked first (:mod:`.bundle`: names, file
kinds, counts and inflated sizes), so a refused source writes nothing. Every object is written
whole (a reader gets the old or the new version of a page, never half of one), small files in
one request and larger ones streamed in parts, so memory stays bounded whatever the sizes. New
files go up assets first, then pages, then the project's ``index.html``, so a new page never
links to an asset that is not there yet; only then are the old site's leftover keys deleted.
So a reader can see old and new pages side by side only while the command runs, and once it
returns only the new site exists. An upload that fails part-way (a store failure, a source
file that changed after the check) leaves that mix in place and exits non-zero; running it
again completes it. Two uploads of one project at once are not serialised (the last to finish
wins, and either may delete the other's new files); run them one at a time.

``redirects.txt`` edits are read-modify-write of one object: concurrent edits can lose one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pythonhosted.catalog import is_project_name
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
from pythonhosted.conveyor.targets import InvalidTarget, check_target
from pythonhosted.storage import NotFound, Store

# Small files are read a batch at a time in one thread hop (a hop per file doubled the time
# of a 20,000-file upload), BATCHES batches at once: at most 2 x 16 x 1 MiB held.
WHOLE_BYTES = PIECE  # larger files are streamed, STREAMS at a time
BATCH = 16
BATCHES = 2
STREAMS = 2
PARALLEL_DELETES = 16


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


def _order(name: str) -> tuple[int, str]:
    """Assets, then pages, then the site's front page last."""
    if name == "index.html":
        return 2, name
    return (1 if name.endswith((".html", ".htm")) else 0), name


async def upload_docs(store: Store, project: str, source: Path, limits: UploadLimits) -> Published:
    """Replace ``project``'s docs with the files in ``source`` (see the module docstring)."""
    check_project(project)
    try:
        bundle = await asyncio.to_thread(open_bundle, source, project, limits)
    except BundleError as exc:
        raise PublishError(str(exc)) from None
    try:
        return await _publish(store, project, bundle)
    except BundleError as exc:
        raise PublishError(str(exc)) from None
    finally:
        bundle.close()


async def _publish(store: Store, project: str, bundle: Bundle) -> Published:
    if not bundle.members:
        raise PublishError(f"{bundle.source}: no files to upload")
    batches, streams = asyncio.Semaphore(BATCHES), asyncio.Semaphore(STREAMS)

    async def put_small(batch: list[Member]) -> None:
        async with batches:
            data = await asyncio.to_thread(lambda: [read_whole(bundle, item) for item in batch])
            await asyncio.gather(
                *(
                    store.put(f"{project}/{item.name}", body)
                    for item, body in zip(batch, data, strict=True)
                )
            )

    async def put_large(member: Member) -> None:
        async with streams:
            await store.put_stream(f"{project}/{member.name}", _streamed(bundle, member))

    ordered = sorted(bundle.members, key=lambda member: _order(member.name))
    for rank in (0, 1, 2):
        members = [item for item in ordered if _order(item.name)[0] == rank]
        small = [item for item in members if item.size <= WHOLE_BYTES]
        await asyncio.gather(
            *(put_small(small[start : start + BATCH]) for start in range(0, len(small), BATCH)),
            *(put_large(item) for item in members if item.size > WHOLE_BYTES),
        )
    wanted = {f"{project}/{member.name}" for member in bundle.members}
    stale = [item.key for item in await store.list(f"{project}/") if item.key not in wanted]
    deletes = asyncio.Semaphore(PARALLEL_DELETES)

    async def delete(key: str) -> None:
        async with deletes:
            await store.delete(key)

    await asyncio.gather(*(delete(key) for key in stale))
    return Published(len(wanted), len(stale))


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
