"""``pythonhosted files upload``: store distributions the way Warehouse does.

Each file goes to its BLAKE2b-256 key with project/version/package-type/python-version
metadata; a wheel also gets its PEP 658 ``.metadata`` sidecar; then a catalog record is written.
Identical bytes re-uploaded are a no-op; different bytes under an existing filename are refused
(filenames are unique forever on PyPI).
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
from datetime import UTC, datetime

from pythonhosted.catalog import FileRecord, get_record, record_key
from pythonhosted.distributions import (
    parse_filename,
    requires_python,
    storage_key,
    wheel_metadata,
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


async def upload(store: Store, filename: str, data: bytes) -> FileRecord:
    """Store one distribution; return its catalog record (the existing one for a no-op)."""
    dist = parse_filename(filename)
    key = storage_key(data, filename)
    blake2 = key.split("/")[1] + key.split("/")[2] + key.split("/")[3]
    existing = await get_record(store, dist.project, filename)
    if existing is not None:
        if existing.blake2b_256 != blake2:
            raise UploadRefused(f"{filename}: a different file with this name already exists")
        return existing

    metadata_sha256 = None
    python_requirement = None
    if dist.package_type == "bdist_wheel":
        core_metadata = wheel_metadata(data, dist)
        metadata_sha256 = hashlib.sha256(core_metadata).hexdigest()
        python_requirement = requires_python(core_metadata)
        await _put_once(store, key + ".metadata", core_metadata, METADATA_CONTENT_TYPE, None)
    await _put_once(store, key, data, content_type_for(filename), dist.metadata())

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
        requires_python=python_requirement,
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
