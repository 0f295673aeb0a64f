"""The record of every uploaded file, kept beside the files in the primary store.

One small JSON object per file under ``catalog/{normalized project}/{filename}.json``: written
create-only after the file itself, so a record always points at a stored file and concurrent
uploads never rewrite each other's records. The simple index (PEP 503/691) and conveyor's
own-index resolver read it; nothing reads the ``packages/`` tree to answer them.

Readers cache records for a while. Whoever changes the catalog (an upload, a yank, a delete)
then rewrites one small object, :data:`GENERATION_KEY`, and readers that look at it through a
:class:`CatalogWatch` drop their caches when it changes: they notice within a second, however
long their cache TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import asdict, dataclass, fields

import orjson
from packaging.utils import canonicalize_name

from pythonhosted.coalesce import Coalescer
from pythonhosted.storage import NotFound, StorageError, Store

log = logging.getLogger(__name__)

PREFIX = "catalog/"
# Outside PREFIX, so nothing that lists the records ever mistakes it for one.
GENERATION_KEY = "catalog-generation"
READ_CONCURRENCY = 32  # record reads in flight per listing (a project may have thousands)


@dataclass(frozen=True, slots=True)
class FileRecord:
    filename: str
    path: str  # the files edge's URL path, /packages/xx/yy/…/filename
    project: str
    version: str
    package_type: str
    python_version: str
    size: int
    sha256: str
    blake2b_256: str
    upload_time: str  # ISO 8601 UTC, as PEP 700 reports it
    requires_python: str | None = None
    metadata_sha256: str | None = None  # of the PEP 658 sidecar, for wheels
    yanked: bool = False  # PEP 592: installers skip it unless pinned with ==
    yanked_reason: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> FileRecord:
        """A record as stored; fields a newer writer added are left out, not an error."""
        stored = orjson.loads(data)
        return cls(**{name: stored[name] for name in _FIELDS if name in stored})


_FIELDS = tuple(field.name for field in fields(FileRecord))


def record_key(project: str, filename: str) -> str:
    return f"{PREFIX}{canonicalize_name(project)}/{filename}.json"


async def get_record(store: Store, project: str, filename: str) -> FileRecord | None:
    try:
        return FileRecord.from_json(await store.get_bytes(record_key(project, filename)))
    except NotFound:
        return None


async def put_record(store: Store, record: FileRecord) -> None:
    """Rewrite an existing record (a yank or an unyank changes it in place)."""
    await store.put(record_key(record.project, record.filename), record.to_json())


async def project_records(store: Store, project: str) -> list[FileRecord]:
    """Every file of one project, sorted by filename.

    A record deleted between the listing and its read is left out, not an error.
    """
    listed = await store.list(f"{PREFIX}{canonicalize_name(project)}/")
    limit = asyncio.Semaphore(READ_CONCURRENCY)

    async def read(key: str) -> FileRecord | None:
        async with limit:
            try:
                return FileRecord.from_json(await store.get_bytes(key))
            except NotFound:
                return None

    found = await asyncio.gather(*(read(item.key) for item in listed))
    return [record for record in found if record is not None]


async def projects(store: Store) -> list[str]:
    """Normalized names of every project with at least one file."""
    return sorted({item.key[len(PREFIX) :].split("/", 1)[0] for item in await store.list(PREFIX)})


async def mark_changed(store: Store) -> None:
    """Tell every :class:`CatalogWatch` on this store that records changed."""
    await store.put(GENERATION_KEY, f"{time.time():.6f} {uuid.uuid4().hex}\n".encode())


class CatalogWatch:
    """Whether the catalog changed since the last look; the store is asked at most once per
    ``interval`` seconds, by one read however many requests ask meanwhile.

    The first look only learns the current generation (there is nothing cached before it). A
    store that fails to answer counts as unchanged: caches keep serving, and expire on their
    own TTL as before.
    """

    def __init__(self, store: Store, interval: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self._seen: bytes | None = None
        self._next = 0.0
        self._looking: Coalescer[None, bool] = Coalescer()

    async def changed(self) -> bool:
        if time.monotonic() < self._next:
            return False
        return await self._looking.run(None, self._look)

    async def _look(self) -> bool:
        try:
            generation = await self.store.get_bytes(GENERATION_KEY)
        except NotFound:
            generation = b""
        except StorageError as exc:
            log.warning("catalog generation unreadable: %s", exc)
            self._next = time.monotonic() + self.interval
            return False
        self._next = time.monotonic() + self.interval
        changed = self._seen is not None and generation != self._seen
        self._seen = generation
        return changed
