"""The record of every uploaded file, kept beside the files in the primary store.

One small JSON object per file under ``catalog/{normalized project}/{filename}.json``: written
create-only after the file itself, so a record always points at a stored file and concurrent
uploads never rewrite each other's records. The simple index (PEP 503/691) and conveyor's
own-index resolver read it; nothing reads the ``packages/`` tree to answer them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson
from packaging.utils import canonicalize_name

from pythonhosted.storage import NotFound, Store

PREFIX = "catalog/"


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

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> FileRecord:
        return cls(**orjson.loads(data))


def record_key(project: str, filename: str) -> str:
    return f"{PREFIX}{canonicalize_name(project)}/{filename}.json"


async def get_record(store: Store, project: str, filename: str) -> FileRecord | None:
    try:
        return FileRecord.from_json(await store.get_bytes(record_key(project, filename)))
    except NotFound:
        return None


async def project_records(store: Store, project: str) -> list[FileRecord]:
    """Every file of one project, sorted by filename."""
    listed = await store.list(f"{PREFIX}{canonicalize_name(project)}/")
    return [FileRecord.from_json(await store.get_bytes(item.key)) for item in listed]


async def projects(store: Store) -> list[str]:
    """Normalized names of every project with at least one file."""
    return sorted({item.key[len(PREFIX) :].split("/", 1)[0] for item in await store.list(PREFIX)})
