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
    MalformedRedirects,
    Redirect,
    dump_redirects,
    parse_redirects,
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


async def read_redirects(store: Store) -> dict[str, Redirect]:
    """The stored table ({} when there is none); PublishError when it is malformed."""
    try:
        data = await store.get_bytes(REDIRECTS_KEY)
    except NotFound:
        return {}
    try:
        return parse_redirects(data)
    except MalformedRedirects as exc:
        raise PublishError(f"{REDIRECTS_KEY} is malformed, fix it first: {exc}") from None


async def set_redirect(store: Store, project: str, redirect: Redirect | None) -> bool:
    """Add, replace (``redirect``) or remove (None) one entry; False if nothing changed."""
    check_project(project)
    if redirect is not None and not redirect.base_uri.startswith(("https://", "http://")):
        raise PublishError(f"base URI must be an http(s) URL, got {redirect.base_uri!r}")
    table = await read_redirects(store)
    if table.get(project) == redirect:
        return False
    if redirect is None:
        del table[project]
    else:
        table[project] = redirect
    await store.put(REDIRECTS_KEY, dump_redirects(table))
    return True
