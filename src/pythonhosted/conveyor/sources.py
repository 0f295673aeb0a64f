"""Where a project's files come from: the Source interface, its errors, and the own index.

A source answers ``fetch(project, stale)`` with an :class:`Entry` (a project's files or a
client-error status, plus how long that answer stays fresh) or raises
:class:`UpstreamUnavailable`. ``stale`` is the expired entry, if any, so an HTTP source can
revalidate it with its ETag. The cache in ``resolver`` sits in front of every source.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Protocol

from pythonhosted.catalog import FileRecord, ProjectRead, read_project
from pythonhosted.conveyor.projectfiles import LegacyFile, ProjectFiles
from pythonhosted.conveyor.targets import check_target
from pythonhosted.storage import StorageError, Store
from pythonhosted.storage.stores import check_key

log = logging.getLogger(__name__)

_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")  # anything but printable ASCII


class UpstreamUnavailable(Exception):
    """The source failed or could not be reached; the legacy URL answers 503."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One answer about a project: its files (status 200) or a 4xx status to repeat."""

    status: int
    files: ProjectFiles | None
    etag: str | None = None
    fresh_until: float = 0.0  # time.monotonic() deadline; 0 for "do not keep"
    # The own index's: what the next read of the project needs to read only what changed.
    read: ProjectRead[LegacyFile | None] | None = None

    @property
    def storable(self) -> bool:
        """Worth keeping: still fresh, or revalidatable with its ETag."""
        return self.fresh_until > time.monotonic() or self.etag is not None


class Source(Protocol):
    async def fetch(self, project: str, stale: Entry | None) -> Entry:
        """A fresh answer for ``project`` (canonical name); UpstreamUnavailable on failure."""
        ...

    async def close(self) -> None:
        """Release connections (called once at shutdown)."""
        ...


class OwnIndexSource:
    """Spec rule 8: the catalog ``files upload`` writes, so no external service is needed.

    Targets are the files edge's hashed paths, relative (``/packages/…``, same host) or under
    ``files_base_url``. The catalog records no signatures, so ``.asc`` requests get 404.
    Answers stay fresh for ``ttl`` seconds; an unknown project is an empty one (404 "no file
    found"). A stale answer is read again from what it holds: one listing, and a read per
    record that is new or was rewritten (a 100,000-file project that takes an upload costs
    one record read, not 100,000).
    """

    def __init__(self, store: Store, files_base_url: str, ttl: float) -> None:
        self.store = store
        self.base = files_base_url.rstrip("/")
        self.ttl = ttl

    async def fetch(self, project: str, stale: Entry | None) -> Entry:
        previous = stale.read if stale is not None else None
        try:
            read = await read_project(self.store, project, self._legacy, previous)
        except StorageError as exc:
            raise UpstreamUnavailable(f"catalog: {exc}") from exc
        except (ValueError, TypeError) as exc:  # a record that is not JSON, or not a record
            raise UpstreamUnavailable(f"catalog of {project}: malformed record ({exc})") from exc
        if (
            previous is not None
            and stale is not None
            and stale.files is not None
            and (read.kept is previous.kept)
        ):
            files = stale.files  # nothing changed
        else:
            # In a thread: 100,000 files take ~1 s of CPU to index, which on the loop held up
            # every request of the process after each upload to the project.
            usable = [found for found in read.values if found is not None]
            files = await asyncio.to_thread(ProjectFiles, usable)
        return Entry(200, files, fresh_until=time.monotonic() + self.ttl, read=read)

    def _legacy(self, record: FileRecord) -> LegacyFile | None:
        if not self._usable(record):
            return None
        return LegacyFile(record.filename, record.python_version, self.base + record.path, False)

    def _usable(self, record: FileRecord) -> bool:
        """Whether a stored record can be served: text fields, and a path that may go out in
        ``Location`` (``files upload`` writes ``/packages/xx/yy/…/name``, so anything else was
        not written by it). Others are logged and skipped."""
        path = record.path
        try:
            fields = (record.filename, record.python_version, path)
            if not all(isinstance(field, str) for field in fields):
                raise ValueError(f"{fields!r}"[:200])
            if not path.startswith("/packages/") or _UNPRINTABLE.search(path):
                raise ValueError(path)
            check_key(path[1:])
            if self.base:
                check_target(self.base + path)
        except ValueError:
            log.warning("catalog record %.200r is not a files edge file; skipping it", path)
            return False
        return True

    async def close(self) -> None:
        return None
