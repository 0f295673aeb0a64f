"""``pythonhosted files upload``: store distributions the way Warehouse does.

Each file is checked first (:func:`pythonhosted.distributions.core_metadata`: a readable,
harmless archive whose core metadata names the filename's project and version), then goes to
its BLAKE2b-256 key with project/version/package-type/python-version metadata; a wheel also
gets its PEP 658 ``.metadata`` sidecar; then the catalog record, and last the file's
``distribution_metadata`` row in the queue the warehouse takes it from (written again by a
retry, taken once: :mod:`pythonhosted.warehouse.metadata`). The record is what the
index and conveyor read, so a refused file stores nothing, and an upload that fails half-way
leaves at most content-addressed objects that nothing lists (the next attempt completes it).
Identical bytes re-uploaded are a no-op; different bytes under an existing filename are refused
(filenames are unique forever on PyPI).

Memory does not grow with the file: it is read from disk a block at a time, three times. The
first pass computes the hashes (the key's BLAKE2b-256, SHA-256, MD5) and stops with TooLarge
past ``max_bytes``, counting the bytes it reads (a size taken from ``stat`` before says
nothing of a file that grows meanwhile: one growing past the limit was read to its end and
stored whole, and one that never stopped growing was read for ever); then the core metadata
is read out of the archive; then the bytes are streamed to the store and hashed again, and the
put is aborted (SourceChanged, nothing stored) unless they are the bytes the key was made
from. So a file rewritten during the upload is never stored under a key its bytes do not
have, nor recorded with metadata read from other bytes than those stored. When the object is
already stored (an earlier attempt), that last pass only reads and hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import mimetypes
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pythonhosted import __version__
from pythonhosted.catalog import FileRecord, get_record, mark_changed, record_key, was_deleted
from pythonhosted.distributions import (
    METADATA_MAX_BYTES,
    Distribution,
    core_metadata,
    parse_filename,
    requires_python,
    storage_key,
)
from pythonhosted.storage import NotFound, Store
from pythonhosted.storage.errors import AlreadyExists
from pythonhosted.warehouse.metadata import enqueue

METADATA_CONTENT_TYPE = "text/plain; charset=utf-8"
UPLOADED_VIA = f"pythonhosted/{__version__}"
BLOCK = 2**20  # what each pass over the file reads at a time


class UploadRefused(ValueError):
    """The store already has a different file under this filename, or had one (deleted)."""


class TooLarge(ValueError):
    """The file has more bytes than an upload may (``files.upload_max_bytes``)."""


class SourceChanged(ValueError):
    """The file's bytes changed while it was being uploaded; nothing was stored."""


@dataclass(frozen=True, slots=True)
class Digests:
    size: int
    blake2b_256: str
    sha256: str
    md5: str


def content_type_for(filename: str) -> str:
    if filename.endswith(".whl"):
        return "application/zip"
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


async def upload(
    store: Store,
    filename: str,
    source: bytes | Path,
    *,
    metadata_max_bytes: int = METADATA_MAX_BYTES,
    uploaded_via: str = UPLOADED_VIA,
    max_bytes: int | None = None,
) -> FileRecord:
    """Store one distribution, its bytes or the file at a path; return its catalog record (the
    existing one for a no-op).

    InvalidDistribution for a file that fails the checks, TooLarge for one of more than
    ``max_bytes`` bytes (None: no limit), UploadRefused for a name taken by other bytes,
    SourceChanged for a file written to meanwhile; nothing is stored in any of these cases.
    ``uploaded_via``: the uploading tool, as the warehouse's ``distribution_metadata``
    reports it.
    """
    dist = parse_filename(filename)
    limits = (metadata_max_bytes, max_bytes)
    if isinstance(source, bytes):
        return await _upload(store, dist, io.BytesIO(source), limits, uploaded_via)
    # Unbuffered: a buffered reader's seek back to the start of a small file reads its buffer
    # again, not the file, and a verifying pass would see the bytes of the first pass.
    with await asyncio.to_thread(open, source, "rb", buffering=0) as file:
        return await _upload(store, dist, file, limits, uploaded_via)


async def _upload(
    store: Store,
    dist: Distribution,
    file: BinaryIO,
    limits: tuple[int, int | None],
    uploaded_via: str,
) -> FileRecord:
    filename = dist.filename
    metadata_max_bytes, max_bytes = limits
    digests = await asyncio.to_thread(digests_of, file, filename, max_bytes)
    metadata = await asyncio.to_thread(core_metadata, file, dist, metadata_max_bytes)
    key = storage_key(digests.blake2b_256, filename)
    blake2 = digests.blake2b_256
    existing = await get_record(store, dist.project, filename)
    if existing is None and await was_deleted(store, dist.project, filename):
        raise UploadRefused(
            f"{filename}: this filename was used by a deleted file; use a different version"
        )
    if existing is not None:
        if existing.blake2b_256 != blake2:
            raise UploadRefused(f"{filename}: a different file with this name already exists")
        await asyncio.to_thread(_verify, file, filename, digests)  # the metadata's bytes
        if existing.md5 is not None:  # (a record from before: the backfill's to do)
            await enqueue(store, existing, metadata)  # an upload that stopped before it
        return existing

    metadata_sha256 = None
    await _put_verified(store, key, file, dist, digests)
    if dist.package_type == "bdist_wheel":
        metadata_sha256 = hashlib.sha256(metadata).hexdigest()
        with contextlib.suppress(AlreadyExists):  # content-addressed: same key, same bytes
            await store.put(
                key + ".metadata", metadata, content_type=METADATA_CONTENT_TYPE, create_only=True
            )

    record = FileRecord(
        filename=filename,
        path="/" + key,
        project=dist.project,
        version=dist.version,
        package_type=dist.package_type,
        python_version=dist.python_version,
        size=digests.size,
        sha256=digests.sha256,
        blake2b_256=blake2,
        upload_time=(await _upload_time(store, key)),
        requires_python=requires_python(metadata),
        metadata_sha256=metadata_sha256,
        md5=digests.md5,
        uploaded_via=uploaded_via,
    )
    try:
        await store.put(record_key(dist.project, filename), record.to_json(), create_only=True)
    except AlreadyExists:
        # A concurrent upload of the same name won, or this one did (its put was answered
        # 5xx though it landed, and the store client's retry found it): the record counts.
        winner = await get_record(store, dist.project, filename)
        if winner is None or winner.blake2b_256 != blake2:
            raise UploadRefused(
                f"{filename}: a different file with this name already exists"
            ) from None
        await mark_changed(store, [dist.project])
        if winner.md5 is not None:
            await enqueue(store, winner, metadata)
        return winner
    await mark_changed(store, [dist.project])  # indexes show it within a second, not a TTL
    await enqueue(store, record, metadata)
    return record


def digests_of(file: BinaryIO, filename: str, max_bytes: int | None = None) -> Digests:
    """The file's size and hashes, in one pass; TooLarge as soon as it read past
    ``max_bytes``."""
    blake2, sha256 = _blake2b_256(), hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    for block in _blocks(file, blake2.update, sha256.update, md5.update):
        size += len(block)
        if max_bytes is not None and size > max_bytes:
            raise TooLarge(f"{filename}: larger than {max_bytes} bytes")
    return Digests(size, blake2.hexdigest(), sha256.hexdigest(), md5.hexdigest())


def _blake2b_256() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=32)


def _blocks(file: BinaryIO, *updates: Callable[[bytes], None]) -> Iterator[bytes]:
    """The file from its start, a block at a time, each given to ``updates`` first."""
    file.seek(0)
    while block := file.read(BLOCK):
        for update in updates:
            update(block)
        yield block


async def _put_verified(
    store: Store, key: str, file: BinaryIO, dist: Distribution, digests: Digests
) -> None:
    """Stream the file to ``key`` unless it is there (content-addressed: same key, same
    bytes), aborting the put unless the bytes read are those of ``digests``.

    One that is there without its content type and metadata (a local directory keeps them in
    a sidecar written after the bytes: an upload killed, or refused by a full disk, between
    the two) is written again with them. Only the bytes' existence was checked, so the
    record went out for an object the edge served as ``application/octet-stream`` whose
    downloads were logged without project, version or type: counted for no project.
    """
    content_type, metadata = content_type_for(dist.filename), dist.metadata()
    try:
        await store.put_stream(
            key,
            _verified_blocks(file, dist.filename, digests),
            content_type=content_type,
            metadata=metadata,
            create_only=True,
        )
    except AlreadyExists:
        info = await store.info(key)
        if info.content_type == content_type and metadata.items() <= info.metadata.items():
            await asyncio.to_thread(_verify, file, dist.filename, digests)
            return
        await store.put_stream(  # the same bytes, or SourceChanged: readers see no change
            key,
            _verified_blocks(file, dist.filename, digests),
            content_type=content_type,
            metadata=metadata,
        )


async def _verified_blocks(file: BinaryIO, filename: str, digests: Digests) -> AsyncIterator[bytes]:
    """The file's blocks, read in a thread; SourceChanged instead of the end when they are
    not the bytes of ``digests``, or as soon as there are more of them."""
    blake2 = _blake2b_256()
    blocks = _blocks(file, blake2.update)
    size = 0
    while (block := await asyncio.to_thread(next, blocks, None)) is not None:
        size += len(block)
        if size > digests.size:
            raise _changed(filename)
        yield block
    _check(filename, size, blake2, digests)


def _verify(file: BinaryIO, filename: str, digests: Digests) -> None:
    """SourceChanged unless the file's bytes are still those of ``digests``."""
    blake2 = _blake2b_256()
    _check(filename, sum(len(block) for block in _blocks(file, blake2.update)), blake2, digests)


def _check(filename: str, size: int, blake2: hashlib.blake2b, digests: Digests) -> None:
    """SourceChanged unless ``size`` bytes hashed to ``blake2`` are those of ``digests``."""
    if (size, blake2.hexdigest()) != (digests.size, digests.blake2b_256):
        raise _changed(filename)


def _changed(filename: str) -> SourceChanged:
    return SourceChanged(f"{filename}: the file changed while it was being uploaded")


async def _upload_time(store: Store, key: str) -> str:
    """The stored object's Last-Modified, so the index and the edge report the same time."""
    try:
        modified = (await store.info(key)).last_modified
    except NotFound:
        modified = datetime.now(UTC)
    return modified.astimezone(UTC).isoformat().replace("+00:00", "Z")
