"""Where a project's files come from: the Source interface, its errors, and the own index.

A source answers ``fetch(project, stale)`` with an :class:`Entry` (a project's files or a
client-error status, plus how long that answer stays fresh) or raises
:class:`UpstreamUnavailable`. ``stale`` is the expired entry, if any, so an HTTP source can
revalidate it with its ETag. The cache in ``resolver`` sits in front of every source.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from pythonhosted.catalog import project_records
from pythonhosted.conveyor.index import LegacyFile, ProjectFiles
from pythonhosted.storage import StorageError, Store


class UpstreamUnavailable(Exception):
    """The source failed or could not be reached; the legacy URL answers 503."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One answer about a project: its files (status 200) or a 4xx status to repeat."""

    status: int
    files: ProjectFiles | None
    etag: str | None = None
    fresh_until: float = 0.0  # time.monotonic() deadline; 0 for "do not keep"

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
    found").
    """

    def __init__(self, store: Store, files_base_url: str, ttl: float) -> None:
        self.store = store
        self.base = files_base_url.rstrip("/")
        self.ttl = ttl

    async def fetch(self, project: str, stale: Entry | None) -> Entry:
        try:
            records = await project_records(self.store, project)
        except StorageError as exc:
            raise UpstreamUnavailable(f"catalog: {exc}") from exc
        files = ProjectFiles(
            LegacyFile(record.filename, record.python_version, self.base + record.path, False)
            for record in records
        )
        return Entry(200, files, fresh_until=time.monotonic() + self.ttl)

    async def close(self) -> None:
        return None
