"""Writing the docs store: ``docs upload`` (replace a project's site) and ``docs redirect``.

What an upload guarantees: every object is written whole (a reader gets the old or the new
version of a page, never half of one); new files go up assets first, then pages, then the
project's ``index.html``, so a new page never links to an asset that is not there yet; only
then are the old site's leftover keys deleted. So a reader can see old and new pages side by
side only while the command runs, and once it returns only the new site exists. An upload
that fails part-way leaves that mix in place and exits non-zero; running it again completes
it. Two uploads of one project at once are not serialised (the last to finish wins, and
either may delete the other's new files); run them one at a time.

``redirects.txt`` edits are read-modify-write of one object: concurrent edits can lose one.
"""

from __future__ import annotations

import asyncio
import functools
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pythonhosted.conveyor.redirects import (
    REDIRECTS_KEY,
    InvalidTarget,
    MalformedRedirects,
    Redirect,
    RedirectFile,
    check_target,
    dump_redirects,
    parse_redirects,
    read_redirects_file,
)
from pythonhosted.storage import NotFound, Store
from pythonhosted.storage.stores import check_key

# A project's docs prefix is one path segment; PEP 508's name rule keeps out "..", "/" and NUL.
PROJECT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
PARALLEL = 16


class PublishError(ValueError):
    """A bad project name, source or redirect (one line, for the CLI)."""


@dataclass(frozen=True, slots=True)
class Published:
    written: int
    deleted: int


def check_project(project: str) -> str:
    if not PROJECT.match(project):
        raise PublishError(f"invalid project name {project!r}")
    return project


def _sources(source: Path) -> dict[str, Callable[[], bytes]]:
    """Relative file name -> reader, from a directory or a zip archive."""
    if source.is_dir():
        return {
            path.relative_to(source).as_posix(): path.read_bytes
            for path in sorted(source.rglob("*"))
            if path.is_file()
        }
    if not source.is_file():
        raise PublishError(f"{source}: no such directory or zip file")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PublishError(f"{source}: not a zip archive ({exc})") from exc
    return {
        info.filename: functools.partial(archive.read, info.filename)
        for info in archive.infolist()
        if not info.is_dir()
    }


def _order(name: str) -> tuple[int, str]:
    """Assets, then pages, then the site's front page last."""
    if name == "index.html":
        return 2, name
    return (1 if name.endswith((".html", ".htm")) else 0), name


async def upload_docs(store: Store, project: str, source: Path) -> Published:
    """Replace ``project``'s docs with the files in ``source`` (see the module docstring)."""
    check_project(project)
    files = _sources(source)
    if not files:
        raise PublishError(f"{source}: no files to upload")
    keys: dict[str, str] = {}
    for name in files:
        key = f"{project}/{name}"
        try:
            check_key(key)
        except ValueError:
            raise PublishError(f"{source}: refusing unsafe file name {name!r}") from None
        keys[name] = key
    limit = asyncio.Semaphore(PARALLEL)

    async def put(name: str) -> None:
        async with limit:
            await store.put(keys[name], files[name]())

    ordered = sorted(files, key=_order)
    for rank in (0, 1, 2):
        await asyncio.gather(*(put(name) for name in ordered if _order(name)[0] == rank))
    wanted = set(keys.values())
    stale = [item.key for item in await store.list(f"{project}/") if item.key not in wanted]

    async def delete(key: str) -> None:
        async with limit:
            await store.delete(key)

    await asyncio.gather(*(delete(key) for key in stale))
    return Published(len(wanted), len(stale))


async def read_redirects(store: Store, project: str) -> RedirectFile:
    """The stored table (empty when there is none), to edit ``project``'s entry in.

    PublishError when it is malformed, or when a line other than ``project``'s has a target
    the service would refuse (rewriting the file would silently drop it).
    """
    try:
        data, _ = await read_redirects_file(store)
        parsed = parse_redirects(data)
    except NotFound:
        return RedirectFile({})
    except MalformedRedirects as exc:
        raise PublishError(f"{REDIRECTS_KEY} is malformed, fix it first: {exc}") from None
    for refused in parsed.refused:
        if refused.project != project:
            raise PublishError(f"{refused}; fix it first")
    return parsed


async def set_redirect(store: Store, project: str, redirect: Redirect | None) -> bool:
    """Add, replace (``redirect``) or remove (None) one entry; False if nothing changed.

    A refused line of ``project``'s own is replaced or removed too: that is how to fix it.
    """
    check_project(project)
    if redirect is not None:
        try:
            check_target(redirect.base_uri)
        except InvalidTarget as exc:
            raise PublishError(f"base URI {exc}") from None
    stored = await read_redirects(store, project)
    table = stored.table
    if table.get(project) == redirect and not stored.refused:
        return False
    if redirect is None:
        table.pop(project, None)
    else:
        table[project] = redirect
    await store.put(REDIRECTS_KEY, dump_redirects(table))
    return True
