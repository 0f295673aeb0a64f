"""``open_store(url)``: a store from its URL, over obstore's local, memory, S3 and GCS back ends.

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

from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from obstore.store import MemoryStore

from pythonhosted.storage.cloud import cloud_backend, describe
from pythonhosted.storage.directory import DirectoryStore
from pythonhosted.storage.stores import UNTYPED, Store, Timeouts

_memory_stores: dict[str, MemoryStore] = {}
_SECRET_PARAMS = frozenset(
    {"secret_access_key", "session_token", "token", "bearer_token", "service_account_key"}
)


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
        # No path at all ("file://", an unset variable's "file://$DIR") was the working
        # directory: a store of whatever the command happened to run in.
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ValueError(f"file store URL must be file:///path, got {url!r}")
        root = Path(unquote(parts.path)).absolute()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, not writable, or a file in the way
            raise ValueError(f"cannot create store directory {root}: {exc.strerror}") from None
        return DirectoryStore(url, root, timeouts=timeouts)
    if parts.scheme == "memory":
        name = parts.netloc + parts.path
        backend = _memory_stores.setdefault(name, MemoryStore())
        return Store(url, backend, timeouts=timeouts)
    if parts.scheme in ("s3", "gs"):
        if not parts.netloc:
            raise ValueError(f"store URL needs a bucket: {url!r}")
        label = describe(parts.scheme, parts, params)
        cloud = cloud_backend(parts.scheme, parts, params, timeouts, label)
        # reads go here while the retry budget is spent (storage/retrybudget.py)
        once = None
        if timeouts.retries:
            once = cloud_backend(parts.scheme, parts, params, replace(timeouts, retries=0), label)
        # An object put without a type gets the one the server picks: binary/octet-stream from
        # AWS and moto; from SeaweedFS one sniffed from the bytes (text/plain for JSON lines),
        # and for application/octet-stream one guessed from the name. SeaweedFS keeps AWS's
        # default when it is sent, so every server then says the same.
        return Store(
            _redact(url),
            cloud,
            timeouts=timeouts,
            label=label,
            default_content_type=UNTYPED,
            once=once,
        )
    raise ValueError(f"unsupported store URL {url!r} (use file://, memory://, s3:// or gs://)")


def _redact(url: str) -> str:
    return url.split("?", 1)[0]
