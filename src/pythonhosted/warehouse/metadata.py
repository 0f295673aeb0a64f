"""``distribution_metadata`` rows: one per uploaded file, from its catalog record and the core
metadata inside it, and the queue that takes them from uploads to the warehouse.

A row is built once, from what the upload had in hand: the file's record
(:class:`~pythonhosted.catalog.FileRecord`) and its core metadata (a wheel's ``METADATA``, an
sdist's ``PKG-INFO``). ``files upload`` puts it in the files store under :data:`QUEUE`, one
object per file named after the file (a retried upload writes the same object again); the
publish pass (or ``linehaul metadata``) adds the queued rows to the warehouse, which skips a
filename it holds already, and deletes the objects after the warehouse committed: a publish
killed anywhere in between loads nothing twice. Stores uploaded before there was a queue are
read whole by :func:`backfill_rows` (``linehaul metadata --backfill``): every record, its
sidecar or its file.

Fields follow Warehouse's upload (``forklift/legacy.py``, ``dist_metadata``) where it says how:
the description cut to its first 40,000 bytes, the keywords joined with ``", "``,
``requires_dist`` and ``requires_python`` as ``packaging`` writes them back, project URLs as
``"Label, URL"``, ``has_signature`` false (signatures are not taken), ``path`` the key under
``/packages/``. Unlike Warehouse, ``platform`` keeps every Platform field, not just the first
(pypi/warehouse#8257).

The table is immutable, as PyPI's is ("rows ... are not removed even if a release or project
is deleted", PyPI's BigQuery documentation; Warehouse never updates them): a yank or a delete
changes the catalog, not these rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from packaging.metadata import RawMetadata
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from pythonhosted.archives import ArchiveRefused
from pythonhosted.catalog import FileRecord, project_records, projects
from pythonhosted.distributions import (
    InvalidDistribution,
    core_metadata,
    parse_core_metadata,
    parse_filename,
)
from pythonhosted.storage import NotFound, Store

log = logging.getLogger(__name__)

QUEUE = "metadata-queue/"
"""Where uploads leave the rows the warehouse has not taken yet, in the files store."""
DESCRIPTION_MAX_BYTES = 40_000  # Warehouse's MAX_DESCRIPTION_LENGTH_TO_BIGQUERY_IN_BYTES
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f +00:00"
"""How a row writes ``upload_time`` (the back ends read it so)."""
READ_CONCURRENCY = 8  # files read at once by the backfill


def _text(raw: RawMetadata, key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) and value else None


def _texts(raw: RawMetadata, key: str) -> list[str]:
    value = raw.get(key)
    return [item for item in value if item] if isinstance(value, list) else []


def _requirement(text: str) -> str:
    try:
        return str(Requirement(text))
    except InvalidRequirement:
        return text


def _requires_python(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return str(SpecifierSet(text))
    except InvalidSpecifier:
        return text.strip()


def _description(text: str | None) -> str | None:
    if text is None:
        return None
    return text.encode()[:DESCRIPTION_MAX_BYTES].decode("utf-8", "ignore") or None


def upload_time(record: FileRecord) -> str:
    """The record's ISO 8601 upload time as rows write it (UTC, microseconds)."""
    when = datetime.fromisoformat(record.upload_time.replace("Z", "+00:00")).astimezone(UTC)
    return when.strftime(TIMESTAMP_FORMAT)


def metadata_row(record: FileRecord, metadata: bytes | None, md5: str) -> dict[str, Any]:
    """The ``distribution_metadata`` row of one file; ``metadata`` its core metadata (None
    when it could not be read: the row then has the record's facts only)."""
    raw: RawMetadata = {}
    if metadata is not None:
        # Refused only when stored before uploads were checked for it: the record's facts then.
        with contextlib.suppress(ArchiveRefused):
            raw = parse_core_metadata(metadata)
    keywords = _texts(raw, "keywords")
    urls = raw.get("project_urls") or {}
    return {
        "metadata_version": _text(raw, "metadata_version"),
        "name": _text(raw, "name") or record.project,
        "version": _text(raw, "version") or record.version,
        "summary": _text(raw, "summary"),
        "description": _description(_text(raw, "description")),
        "description_content_type": _text(raw, "description_content_type"),
        "author": _text(raw, "author"),
        "author_email": _text(raw, "author_email"),
        "maintainer": _text(raw, "maintainer"),
        "maintainer_email": _text(raw, "maintainer_email"),
        "license": _text(raw, "license"),
        "license_expression": _text(raw, "license_expression"),
        "license_files": _texts(raw, "license_files"),
        "keywords": ", ".join(keywords) if keywords else None,
        "classifiers": _texts(raw, "classifiers"),
        "platform": _texts(raw, "platforms"),
        "home_page": _text(raw, "home_page"),
        "download_url": _text(raw, "download_url"),
        "requires_python": _requires_python(_text(raw, "requires_python")),
        "requires": _texts(raw, "requires"),
        "provides": _texts(raw, "provides"),
        "obsoletes": _texts(raw, "obsoletes"),
        "requires_dist": [_requirement(text) for text in _texts(raw, "requires_dist")],
        "provides_dist": _texts(raw, "provides_dist"),
        "obsoletes_dist": _texts(raw, "obsoletes_dist"),
        "requires_external": _texts(raw, "requires_external"),
        "project_urls": [f"{label}, {url}" for label, url in urls.items()],
        "uploaded_via": record.uploaded_via,
        "upload_time": upload_time(record),
        "filename": record.filename,
        "size": record.size,
        "path": record.path.removeprefix("/packages/"),
        "python_version": record.python_version,
        "packagetype": record.package_type,
        "comment_text": None,
        "has_signature": False,
        "md5_digest": md5,
        "sha256_digest": record.sha256,
        "blake2_256_digest": record.blake2b_256,
        "provides_extra": _texts(raw, "provides_extra"),
        "supported_platform": _texts(raw, "supported_platforms"),
        "dynamic": _texts(raw, "dynamic"),
    }


def row_json(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row) + b"\n"


def queue_key(filename: str) -> str:
    return f"{QUEUE}{filename}.json"


async def enqueue(store: Store, record: FileRecord, metadata: bytes) -> None:
    """Leave the row of a file just uploaded for the warehouse (idempotent: the same object
    again for the same file)."""
    assert record.md5 is not None  # uploads record it
    await store.put(
        queue_key(record.filename), row_json(metadata_row(record, metadata, record.md5))
    )


async def queued(store: Store, limit: int) -> list[tuple[str, bytes]]:
    """Up to ``limit`` queued rows, (key, row JSON), in key order; one deleted meanwhile (by
    another publisher) is left out."""
    found = []
    for item in (await store.list(QUEUE))[:limit]:
        try:
            found.append((item.key, await store.get_bytes(item.key)))
        except NotFound:
            continue
    return found


async def _file_row(store: Store, record: FileRecord) -> bytes:
    """A stored file's row: the core metadata from its sidecar (a wheel's, when its MD5 is
    recorded too) or from the file itself, copied to a scratch file first: files reach
    gigabytes, and :data:`READ_CONCURRENCY` of them held in memory at once took that many
    times their size."""
    key = record.path.removeprefix("/")
    metadata: bytes | None = None
    md5 = record.md5
    if record.metadata_sha256 is not None and md5 is not None:
        try:
            metadata = await store.get_bytes(key + ".metadata")
        except NotFound:
            metadata = None
    if metadata is not None and md5 is not None:
        return row_json(metadata_row(record, metadata, md5))
    with tempfile.TemporaryDirectory(prefix="pythonhosted-backfill-") as scratch:
        copy = Path(scratch) / "file"
        await store.get_file(key, copy)
        found, digest = await asyncio.to_thread(_read_copy, copy, record)
    return row_json(metadata_row(record, found, digest))


# The md5 column is a checksum that PyPI's rows carry, not a security measure (FIPS builds).
_MD5 = partial(hashlib.md5, usedforsecurity=False)


def _read_copy(copy: Path, record: FileRecord) -> tuple[bytes | None, str]:
    """The core metadata (None when unreadable) and the MD5 of a stored file's copy."""
    with copy.open("rb") as file:
        md5 = record.md5 or hashlib.file_digest(file, _MD5).hexdigest()
        try:
            return core_metadata(file, parse_filename(record.filename)), md5
        except InvalidDistribution as exc:
            key = record.path.removeprefix("/")
            log.warning("%s: no readable core metadata (%s); its row has the record only", key, exc)
            return None, md5


async def backfill_rows(store: Store, known: Callable[[str], bool]) -> AsyncIterator[list[bytes]]:
    """Rows of every file in ``store``'s catalog that ``known(filename)`` does not say the
    warehouse holds, a project at a time; files that vanished meanwhile are left out."""
    limit = asyncio.Semaphore(READ_CONCURRENCY)

    async def row(record: FileRecord) -> bytes | None:
        async with limit:
            try:
                return await _file_row(store, record)
            except NotFound:
                return None

    for project in await projects(store):
        records = [r for r in await project_records(store, project) if not known(r.filename)]
        rows = await asyncio.gather(*(row(record) for record in records))
        found = [data for data in rows if data is not None]
        if found:
            yield found
