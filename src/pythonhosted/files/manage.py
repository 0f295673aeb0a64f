"""Managing what was uploaded: find, list, yank and unyank (PEP 592), delete.

Everything goes through the catalog records and ends with
:func:`~pythonhosted.catalog.mark_changed`, so a running index and conveyor drop their caches
within a second. Each action on a file is logged as one structured line (logger
``pythonhosted.files.manage``, fields ``action``, ``project``, ``version``, ``file``, ``path``,
``store`` and the action's own), which ``--log-json`` turns into one JSON object.

A deleted filename can never be uploaded again (as on PyPI): the delete marks it under
``catalog-deleted/`` before anything goes. A delete removes the catalog record first
(nothing lists the file from then on), then the
file and its ``.metadata`` from the primary (and from the archive when asked: PyPI's archive
keeps deleted files, and the files edge falls back to it, so without that a deleted file's URL
goes on answering from the archive). Every step is idempotent, so a delete that failed
half-way is completed by running it again, by filename or release while the record exists
and by hashed path after.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pythonhosted.catalog import (
    FileRecord,
    deleted_key,
    get_record,
    mark_changed,
    project_records,
    projects,
    put_record,
    record_filenames,
    record_key,
    records_of,
)
from pythonhosted.distributions import HASHED_PATH, InvalidDistribution, parse_filename
from pythonhosted.storage import Store

log = logging.getLogger(__name__)
# Projects whose records `files list` reads at once: their store round trips overlap, and
# memory holds this many projects' records, not the catalog's.
PROJECTS_AHEAD = 32


class NothingMatches(ValueError):
    """The name, release or path given matches no uploaded file."""


async def select(store: Store, spec: str) -> list[FileRecord]:
    """The files ``spec`` names: ``PROJECT==VERSION`` (every file of that release), a filename,
    or a hashed path (``/packages/xx/yy/…/filename``)."""
    if "==" in spec:
        project, _, version = (part.strip() for part in spec.partition("=="))
        found = await _release(store, project, version)
    else:
        path = spec if spec.startswith("/packages/") else None
        if path is not None and not HASHED_PATH.match(path):
            raise NothingMatches(f"{spec}: not a hashed path (/packages/xx/yy/<60 hex>/FILE)")
        filename = spec.rsplit("/", 1)[-1]
        try:
            dist = parse_filename(filename)
        except InvalidDistribution as exc:
            raise NothingMatches(str(exc)) from None
        record = await get_record(store, dist.project, filename)
        found = [record] if record is not None and path in (None, record.path) else []
    if not found:
        raise NothingMatches(f"{spec}: no such file")
    return found


async def _release(store: Store, project: str, version: str) -> list[FileRecord]:
    """Every file of one release, reading only the records whose filename names that version.

    A filename says its version (the upload refuses a file whose metadata says another), so
    yanking or deleting a release of a 50,000-file nightly project lists the project and
    reads its few records, instead of reading all 50,000 (14 s of CPU). A filename that
    does not parse (a record ``files upload`` did not write) is read to be sure.
    """
    candidates = []
    for filename in await record_filenames(store, project):
        try:
            named = parse_filename(filename).version
        except InvalidDistribution:
            named = None
        if named is None or _same(named, version):
            candidates.append(filename)
    found = await records_of(store, project, candidates)
    return [record for record in found if _same(record.version, version)]


def _same(stored: str, asked: str) -> bool:
    try:
        return Version(stored) == Version(asked)
    except InvalidVersion:
        return stored == asked


async def listing(store: Store, project: str | None = None) -> AsyncIterator[list[FileRecord]]:
    """The files of ``project``, or of every project one project at a time in name order
    (each project's by filename), :data:`PROJECTS_AHEAD` projects read at once.

    A catalog of a million projects was read whole before the first line was shown: one
    task per record at once, 2 GB and five minutes in without a line. Now the first project
    shows once the names are listed, and memory holds a window of projects.
    """
    if project is not None:
        yield await project_records(store, canonicalize_name(project))
        return
    ahead: deque[asyncio.Task[list[FileRecord]]] = deque()
    try:
        for name in await projects(store):
            ahead.append(asyncio.create_task(project_records(store, name)))
            if len(ahead) >= PROJECTS_AHEAD:
                yield await ahead.popleft()
        while ahead:
            yield await ahead.popleft()
    finally:
        for task in ahead:
            task.cancel()


async def set_yanked(
    store: Store, records: list[FileRecord], yanked: bool, reason: str | None = None
) -> list[FileRecord]:
    """Yank (PEP 592: installers skip them unless pinned) or unyank files; the new records."""
    changed = []
    for record in records:
        new = dataclasses.replace(record, yanked=yanked, yanked_reason=reason if yanked else None)
        await put_record(store, new)
        changed.append(new)
        action = "yank" if yanked else "unyank"
        _log(action, store, new, reason=new.yanked_reason)
    await mark_changed(store, [record.project for record in records])
    return changed


async def delete(
    primary: Store, archive: Store | None, targets: list[tuple[FileRecord | None, str]]
) -> None:
    """Remove each (record, path): the record (when there still is one), then the file and its
    ``.metadata`` from the primary, and from ``archive`` when given. Not logged here: the
    caller logs each delete with how the edges took their purge."""
    for record, path in targets:
        if record is not None:
            # The name stays taken: marked before the record goes, so it is never free.
            await primary.put(deleted_key(record.project, record.filename), b"")
            await primary.delete(record_key(record.project, record.filename))
        for store in (primary, archive):
            if store is not None:
                await store.delete(path[1:])
                await store.delete(path[1:] + ".metadata")
    projects = (_project_of(record, path) for record, path in targets)
    await mark_changed(primary, [project for project in projects if project is not None])


def _project_of(record: FileRecord | None, path: str) -> str | None:
    """The project a deleted file belonged to: by its filename once the record is gone (a
    delete completed by hashed path still tells the caches)."""
    if record is not None:
        return record.project
    try:
        return parse_filename(path.rsplit("/", 1)[-1]).project
    except InvalidDistribution:
        return None


def log_delete(store: Store, record: FileRecord | None, path: str, **fields: Any) -> None:
    _log("delete", store, record, path=path, **fields)


def _log(action: str, store: Store, record: FileRecord | None, **fields: Any) -> None:
    facts: dict[str, Any] = {"action": action, "store": store.url}
    if record is not None:
        facts |= {
            "project": record.project,
            "version": record.version,
            "file": record.filename,
            "path": record.path,
        }
    facts |= fields
    log.info("%s %s", action, facts.get("file") or facts.get("path"), extra=facts)
