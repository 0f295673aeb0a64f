"""``pythonhosted files upload``: store distributions the way Warehouse does.

Each file is checked first (:func:`pythonhosted.distributions.core_metadata`: a readable,
harmless archive whose core metadata names the filename's project and version), then goes to
its BLAKE2b-256 key with project/version/package-type/python-version metadata; a wheel also
gets its PEP 658 ``.metadata`` sidecar; the catalog record comes last. The record is what the
index and conveyor read, so a refused file stores nothing, and an upload that fails half-way
leaves at most content-addressed objects that nothing lists (the next attempt completes it).
Identical bytes re-uploaded are a no-op; different bytes under an existing filename are refused
(filenames are unique forever on PyPI).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mimetypes
from datetime import UTC, datetime

from pythonhosted.catalog import FileRecord, get_record, mark_changed, record_key
from pythonhosted.distributions import (
    METADATA_MAX_BYTES,
    core_metadata,
    parse_filename,
    requires_python,
    storage_key,
)
from pythonhosted.storage import NotFound, Store
from pythonhosted.storage.errors import AlreadyExists

METADATA_CONTENT_TYPE = "text/plain; charset=utf-8"


class UploadRefused(ValueError):
    """The store already has a different file under this filename."""


def content_type_for(filename: str) -> str:
    if filename.endswith(".whl"):
        return "application/zip"
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


async def upload(
    store: Store, filename: str, data: bytes, *, metadata_max_bytes: int = METADATA_MAX_BYTES
) -> FileRecord:
    """Store one distribution; return its catalog record (the existing one for a no-op).

    InvalidDistribution for a file that fails the checks, UploadRefused for a name taken by
    other bytes; nothing is stored in either case.
    """
    dist = parse_filename(filename)
    metadata = await asyncio.to_thread(core_metadata, data, dist, metadata_max_bytes)
    key = storage_key(data, filename)
    blake2 = key.split("/")[1] + key.split("/")[2] + key.split("/")[3]
    existing = await get_record(store, dist.project, filename)
    if existing is not None:
        if existing.blake2b_256 != blake2:
            raise UploadRefused(f"{filename}: a different file with this name already exists")
        return existing

    metadata_sha256 = None
    await _put_once(store, key, data, content_type_for(filename), dist.metadata())
    if dist.package_type == "bdist_wheel":
        metadata_sha256 = hashlib.sha256(metadata).hexdigest()
        await _put_once(store, key + ".metadata", metadata, METADATA_CONTENT_TYPE, None)

    record = FileRecord(
        filename=filename,
        path="/" + key,
        project=dist.project,
        version=dist.version,
        package_type=dist.package_type,
        python_version=dist.python_version,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        blake2b_256=blake2,
        upload_time=(await _upload_time(store, key)),
        requires_python=requires_python(metadata),
        metadata_sha256=metadata_sha256,
    )
    try:
        await store.put(record_key(dist.project, filename), record.to_json(), create_only=True)
    except AlreadyExists:
        # A concurrent upload of the same name won; it is the record that counts.
        winner = await get_record(store, dist.project, filename)
        if winner is None or winner.blake2b_256 != blake2:
            raise UploadRefused(
                f"{filename}: a different file with this name already exists"
            ) from None
        return winner
    await mark_changed(store)  # running indexes show it within a second, not a cache TTL
    return record


async def _put_once(
    store: Store, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None
) -> None:
    with contextlib.suppress(AlreadyExists):  # content-addressed: same key, same bytes
        await store.put(key, data, content_type=content_type, metadata=metadata, create_only=True)


async def _upload_time(store: Store, key: str) -> str:
    """The stored object's Last-Modified, so the index and the edge report the same time."""
    try:
        modified = (await store.info(key)).last_modified
    except NotFound:
        modified = datetime.now(UTC)
    return modified.astimezone(UTC).isoformat().replace("+00:00", "Z")
