"""``open_store(url)``: one Store API over obstore's local, memory, S3 and GCS back ends.

URLs:
- ``file:///abs/dir`` or ``file:rel/dir`` — a local directory (created if missing); custom
  metadata lives in sidecar objects under ``.meta/`` because obstore's LocalStore has none.
- ``memory://name`` — an in-process store shared by every ``open_store`` of the same name.
- ``s3://bucket[/prefix]?endpoint=…&region=…&allow_http=true&skip_signature=true`` —
  credentials come from the environment (``AWS_ACCESS_KEY_ID``…), never from the URL.
- ``gs://bucket[/prefix]?endpoint=…&service_account=/path/key.json&allow_http=true``.
- both take ``metadata_credentials=true|false``: whether the cloud's metadata service may be
  asked for credentials (default: only without a custom ``endpoint``; see ``cloud.py``).

Timeouts are always explicit: obstore's defaults retry a hanging server for minutes, and the
files edge must fall back to the archive within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import obstore
import orjson
from obstore.exceptions import AlreadyExistsError, PermissionDeniedError
from obstore.store import LocalStore, MemoryStore

if TYPE_CHECKING:  # these exist only in obstore's type stubs
    from obstore import GetOptions

from pythonhosted.objectkeys import is_safe_key
from pythonhosted.storage.cloud import cloud_backend, describe
from pythonhosted.storage.errors import AlreadyExists, NotFound, StorageError, StoreUnavailable

META_PREFIX = ".meta/"
UNTYPED = "binary/octet-stream"  # what AWS S3 stores for a put without a type
CHUNK = 256 * 1024
# A streamed put buffers at most (PARTS_IN_FLIGHT + 1) parts; 5 MiB is S3's smallest part.
PART_BYTES = 5 * 2**20
PARTS_IN_FLIGHT = 2
_SECRET_PARAMS = frozenset(
    {"secret_access_key", "session_token", "token", "bearer_token", "service_account_key"}
)
_memory_stores: dict[str, MemoryStore] = {}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Bounds for one store's requests (seconds); ``retries`` are obstore's own retries."""

    connect: float = 2.0
    read: float = 2.0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object, enough to answer HEAD and conditional requests."""

    key: str
    size: int
    etag: str | None
    last_modified: datetime
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    local_path: Path | None = None


@dataclass(frozen=True, slots=True)
class Listed:
    key: str
    size: int
    last_modified: datetime


def check_key(key: str) -> str:
    """Refuse keys that could name something outside the store (or a sidecar)."""
    if not is_safe_key(key) or key.startswith(META_PREFIX):
        raise ValueError(f"invalid object key: {key!r}")
    return key


def _translate(exc: BaseException, store: str, write: bool = False) -> StorageError:
    """obstore's exception as ours, its first line prefixed with the store's name.

    A 403 is NotFound for a read (S3 answers 403 for a missing key to a client that may not
    list the bucket) but a refusal for a write or delete: SeaweedFS checks signatures and
    answers 403 to wrong credentials (moto accepts any), and a write refused that way must not
    look like "someone else deleted it" to the caller.
    """
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, PermissionDeniedError) and write:
        return StoreUnavailable(f"{store}: permission denied: {text}")
    if isinstance(exc, FileNotFoundError | PermissionDeniedError):
        return NotFound(f"{store}: {text or 'not found'}")
    if isinstance(exc, AlreadyExistsError):
        return AlreadyExists(f"{store}: {text}")
    if isinstance(exc, TimeoutError):
        return StoreUnavailable(f"{store}: timed out")
    return StoreUnavailable(f"{store}: {text or type(exc).__name__}")


class Store:
    """One object store. All methods raise NotFound or StoreUnavailable, nothing else."""

    def __init__(
        self,
        url: str,
        backend: Any,
        *,
        local_root: Path | None = None,
        timeouts: Timeouts | None = None,
        label: str | None = None,
        default_content_type: str | None = None,
    ) -> None:
        self.url = url
        self.label = label or url  # how errors name the store (no secrets)
        self.default_content_type = default_content_type
        self.backend = backend
        self.local_root = local_root
        timeouts = timeouts or Timeouts()
        # A whole-request guard on top of the client's own timeouts, for the first byte only.
        self.first_byte_timeout = timeouts.connect + timeouts.read

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    async def info(self, key: str) -> ObjectInfo:
        check_key(key)
        if self.local_root is not None:
            return await asyncio.to_thread(self._local_info, key)
        try:
            result = await asyncio.wait_for(
                obstore.get_async(self.backend, key, options={"head": True}),
                self.first_byte_timeout,
            )
        except Exception as exc:
            raise _translate(exc, self.label) from exc
        return self._info_from(key, result.meta, result.attributes)

    def _local_info(self, key: str) -> ObjectInfo:
        assert self.local_root is not None
        path = self.local_root / key
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise NotFound(f"{self.label}: {key}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"{self.label}: {exc}") from exc
        if not path.is_file():
            raise NotFound(f"{self.label}: {key}")
        sidecar: dict[str, Any] = {}
        try:
            sidecar = orjson.loads((self.local_root / (META_PREFIX + key + ".json")).read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, orjson.JSONDecodeError) as exc:
            raise StoreUnavailable(f"{self.label}: unreadable metadata for {key}: {exc}") from exc
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            content_type=sidecar.get("content_type"),
            metadata=sidecar.get("metadata", {}),
            local_path=path,
        )

    @staticmethod
    def _info_from(key: str, meta: Any, attributes: Mapping[str, str]) -> ObjectInfo:
        attrs = dict(attributes)
        content_type = attrs.pop("Content-Type", None)
        for standard in ("Content-Disposition", "Content-Encoding", "Content-Language"):
            attrs.pop(standard, None)
        attrs.pop("Cache-Control", None)
        etag = meta["e_tag"]
        if etag and not etag.startswith(('"', "W/")):
            etag = f'"{etag}"'
        return ObjectInfo(
            key=key,
            size=meta["size"],
            etag=etag,
            last_modified=meta["last_modified"],
            content_type=content_type,
            metadata=attrs,
        )

    async def read(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Open ``key`` (bytes ``start``..``end``-1 when given) and return its chunk iterator.

        The request is made, and its errors raised, before this returns: a caller that gets an
        iterator can commit to a response status.
        """
        check_key(key)
        options: GetOptions = {}
        if start is not None and end is not None:
            options["range"] = (start, end)
        try:
            result = await asyncio.wait_for(
                obstore.get_async(self.backend, key, options=options), self.first_byte_timeout
            )
        except Exception as exc:
            raise _translate(exc, self.label) from exc
        return self._chunks(result)

    async def _chunks(self, result: Any) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in result.stream(min_chunk_size=CHUNK):
                yield bytes(chunk)
        except Exception as exc:
            raise _translate(exc, self.label) from exc

    async def get_bytes(self, key: str) -> bytes:
        check_key(key)
        try:
            result = await asyncio.wait_for(
                obstore.get_async(self.backend, key), self.first_byte_timeout
            )
            return bytes(await result.bytes_async())
        except Exception as exc:
            raise _translate(exc, self.label) from exc

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        create_only: bool = False,
    ) -> None:
        """Write a whole object atomically (readers never see half of it).

        ``create_only`` raises AlreadyExists instead of overwriting. On a local store the
        metadata sidecar is written first, so a visible object always has its metadata.

        S3 servers differ in how long a create-only put that loses a race takes: moto and AWS
        answer 412 at once; SeaweedFS serialises conditional writes to one key with a lock it
        retries about once a second, so with several writers the losers get their 412 after
        seconds (7 s for 16 at once, measured here). Exactly one writer wins on all of them;
        a read timeout shorter than that turns a loss into StoreUnavailable.
        """
        check_key(key)
        attributes: dict[str, str] = dict(metadata or {})
        if content_type or self.default_content_type:
            attributes["Content-Type"] = content_type or self.default_content_type or ""
        mode: Literal["create", "overwrite"] = "create" if create_only else "overwrite"
        try:
            if self.local_root is not None:
                if attributes:
                    sidecar = {"content_type": content_type, "metadata": dict(metadata or {})}
                    await obstore.put_async(
                        self.backend, META_PREFIX + key + ".json", orjson.dumps(sidecar)
                    )
                await obstore.put_async(self.backend, key, data, mode=mode)
            else:
                await obstore.put_async(
                    self.backend,
                    key,
                    data,
                    mode=mode,
                    attributes=attributes or None,
                    # The memory store joins a multipart upload's parts by copying them all:
                    # one whole put keeps the caller's buffer and is ~8x cheaper (100 MB).
                    use_multipart=False if isinstance(self.backend, MemoryStore) else None,
                )
        except Exception as exc:
            raise _translate(exc, self.label, write=True) from exc

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        """Write an object from ``chunks`` without holding it whole; atomic like :meth:`put`.

        At most ``PART_BYTES * (PARTS_IN_FLIGHT + 1)`` bytes are buffered. When ``chunks``
        raises, nothing is written (a cloud store's multipart upload is aborted, a local
        store's staging file removed, an existing object left as it was) and that exception
        propagates as it is; store failures raise StorageError as everywhere else.
        """
        check_key(key)
        failure: list[BaseException] = []

        async def forwarded() -> AsyncIterator[bytes]:
            try:
                async for chunk in chunks:
                    yield chunk
            except BaseException as exc:
                failure.append(exc)
                raise

        try:
            await obstore.put_async(
                self.backend,
                key,
                forwarded(),
                chunk_size=PART_BYTES,
                max_concurrency=PARTS_IN_FLIGHT,
            )
        except Exception as exc:
            if failure:
                raise failure[0] from None
            raise _translate(exc, self.label, write=True) from exc

    async def copy(self, source: str, destination: str) -> None:
        """Copy ``source`` to ``destination`` in this store, overwriting, with its metadata:
        the store copies it (S3 and GCS server side), the bytes never come here."""
        check_key(source)
        check_key(destination)
        try:
            if self.local_root is not None:  # the sidecar first, as put writes it
                sidecar = META_PREFIX + source + ".json"
                if await asyncio.to_thread((self.local_root / sidecar).is_file):
                    await obstore.copy_async(
                        self.backend, sidecar, META_PREFIX + destination + ".json"
                    )
                else:
                    await self._delete_missing_ok(META_PREFIX + destination + ".json")
            await obstore.copy_async(self.backend, source, destination)
        except Exception as exc:
            raise _translate(exc, self.label, write=True) from exc

    async def _delete_missing_ok(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await obstore.delete_async(self.backend, key)

    async def delete(self, key: str) -> None:
        """Delete ``key`` (and its local sidecar); deleting a missing key is not an error."""
        check_key(key)
        keys = [key, META_PREFIX + key + ".json"] if self.local_root is not None else [key]
        try:
            for name in keys:
                await self._delete_missing_ok(name)
        except Exception as exc:
            raise _translate(exc, self.label, write=True) from exc

    async def list(self, prefix: str = "") -> list[Listed]:
        """Every object under ``prefix`` (sidecars excluded), sorted by key."""
        found: list[Listed] = []
        try:
            async for batch in obstore.list(self.backend, prefix=prefix or None):
                for meta in batch:
                    if not meta["path"].startswith(META_PREFIX):
                        found.append(Listed(meta["path"], meta["size"], meta["last_modified"]))
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise _translate(exc, self.label) from exc
        found.sort(key=lambda item: item.key)
        return found


def open_store(url: str, timeouts: Timeouts | None = None) -> Store:
    """Open a store from its URL; ValueError (one line) for anything malformed."""
    timeouts = timeouts or Timeouts()
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    secrets = _SECRET_PARAMS & params.keys()
    if secrets:
        raise ValueError(
            f"store URL must not carry secrets ({', '.join(sorted(secrets))}): "
            "use the environment or a file"
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file store URL must be file:///path, got {url!r}")
        root = Path(unquote(parts.path)).absolute()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, not writable, or a file in the way
            raise ValueError(f"cannot create store directory {root}: {exc.strerror}") from None
        return Store(url, LocalStore(root), local_root=root, timeouts=timeouts)
    if parts.scheme == "memory":
        name = parts.netloc + parts.path
        backend = _memory_stores.setdefault(name, MemoryStore())
        return Store(url, backend, timeouts=timeouts)
    if parts.scheme in ("s3", "gs"):
        if not parts.netloc:
            raise ValueError(f"store URL needs a bucket: {url!r}")
        label = describe(parts.scheme, parts, params)
        cloud = cloud_backend(parts.scheme, parts, params, timeouts, label)
        # An object put without a type gets the one the server picks: binary/octet-stream from
        # AWS and moto; from SeaweedFS one sniffed from the bytes (text/plain for JSON lines),
        # and for application/octet-stream one guessed from the name. SeaweedFS keeps AWS's
        # default when it is sent, so every server then says the same.
        return Store(_redact(url), cloud, label=label, default_content_type=UNTYPED)
    raise ValueError(f"unsupported store URL {url!r} (use file://, memory://, s3:// or gs://)")


def _redact(url: str) -> str:
    return url.split("?", 1)[0]
