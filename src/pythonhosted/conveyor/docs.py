"""pythonhosted.org: project docs served from a store (spec rules 9-13).

Keys are ``{project}/{path}`` in the docs store, ``index.html`` at its root. On a local
store the hot path is one ``stat`` and the server's pathsend extension, so page bodies never
pass through Python; other stores stream the object in chunks.
"""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime
from urllib.parse import quote, unquote_to_bytes

from pythonhosted.coalesce import Coalescer
from pythonhosted.conveyor.content import content_headers
from pythonhosted.conveyor.redirects import RedirectTable
from pythonhosted.conveyor.replies import reply, security_headers
from pythonhosted.storage import NotFound, Store, StoreUnavailable
from pythonhosted.storage.stores import check_key
from pythonhosted.web.http import http_datetime, not_modified
from pythonhosted.web.types import Headers, Scope, Send

log = logging.getLogger(__name__)

# Encoded slash, backslash and NUL: a key must never gain separators the client hid.
HOSTILE_ESCAPES = (b"%2f", b"%5c", b"%00")
ALLOW = (b"allow", b"GET, HEAD")
PATH_SAFE = "/:@!$&'()*+,;=~"
CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since"})
LOCAL_ENTRIES = 10_000  # local files whose headers are kept; cleared wholesale when full
SMALL_BODY = 64 * 1024  # local files up to this size are kept in memory too...
BODY_BUDGET = 64 * 1024 * 1024  # ...up to this many bytes in all, keys and headers included
ENTRY_BYTES = 1024  # what an entry holds besides its key and body (headers, objects)


class DocsSite:
    def __init__(self, store: Store, redirects: RedirectTable) -> None:
        self.store = store
        self.redirects = redirects
        root = store.local_root
        self._root = str(root).rstrip("/") + "/" if root is not None else None
        self._local: dict[str, tuple[tuple[int, int, int], Found]] = {}
        self._local_bytes = 0
        self._lookups: Coalescer[str, Found | None] = Coalescer()

    async def answer(self, scope: Scope, send: Send) -> int:
        """Send the response to a docs request; return its status."""
        if scope["method"] not in ("GET", "HEAD"):
            await reply(send, scope, 405, "Method not allowed", [ALLOW])
            return 405
        path = _safe_path(scope)
        if path is None:
            await reply(send, scope, 404, "Not Found")
            return 404
        if path == "/":
            return await self._serve(scope, send, "index.html")
        project, slash, rest = path[1:].partition("/")
        if not slash:
            return await _moved(scope, send, 301, f"/{project}/")
        redirect = self.redirects.get(project)
        if redirect is not None:
            return await _moved(scope, send, 302, redirect.location(rest))
        key = path[1:] + "index.html" if path.endswith("/") else path[1:]
        return await self._serve(scope, send, key, directory_fallback=not path.endswith("/"))

    async def _serve(
        self, scope: Scope, send: Send, key: str, directory_fallback: bool = False
    ) -> int:
        try:
            check_key(key)
            found = await self._find(key)
            if found is None and directory_fallback and await self._find(key + "/index.html"):
                return await _moved(scope, send, 301, f"/{key}/")
        except ValueError:
            found = None
        except StoreUnavailable as exc:
            log.warning("docs store could not answer for %s: %s", key, exc)
            await reply(send, scope, 503, "Storage unavailable")
            return 503
        if found is None:
            await reply(send, scope, 404, "Not Found")
            return 404
        headers = [*security_headers(scope), *found.headers]
        if _conditional(scope) and _not_modified(scope, found):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return 304
        headers.append(found.length)
        start = {"type": "http.response.start", "status": 200, "headers": headers}
        if scope["method"] == "HEAD":
            await send(start)
            await send({"type": "http.response.body", "body": b""})
            return 200
        if found.body is not None:
            await send(start)
            await send({"type": "http.response.body", "body": found.body})
            return 200
        if found.local_path is not None and "http.response.pathsend" in (
            scope.get("extensions") or {}
        ):
            await send(start)
            await send({"type": "http.response.pathsend", "path": found.local_path})
            return 200
        try:
            chunks = await self.store.read(key)
        except NotFound:
            await reply(send, scope, 404, "Not Found")
            return 404
        except StoreUnavailable as exc:
            log.warning("docs read of %s failed: %s", key, exc)
            await reply(send, scope, 503, "Storage unavailable")
            return 503
        await send(start)
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return 200

    async def _find(self, key: str) -> Found | None:
        """What to answer for ``key``, or None when it is absent (a directory is absent too)."""
        if self._root is None:  # concurrent requests for one key share one store lookup
            return await self._lookups.run(key, lambda: self._remote_find(key))
        # A local stat is cheaper than a thread hop and never blocks for long; it runs on every
        # request so an upload is visible at once, while the headers are rebuilt only when the
        # file changed.
        full = self._root + key
        try:
            status = os.stat(full)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if not stat.S_ISREG(status.st_mode):
            return None
        signature = (status.st_mtime_ns, status.st_size, status.st_ino)
        cached = self._local.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        body = None
        if status.st_size <= SMALL_BODY:
            small = _read_small(full)
            if small is None:
                return None
            body, status = small
            signature = (status.st_mtime_ns, status.st_size, status.st_ino)
        found = Found(
            key,
            status.st_size,
            f'"{status.st_mtime_ns:x}-{status.st_size:x}"',
            datetime.fromtimestamp(status.st_mtime, UTC),
            full,
            body,
        )
        self._remember(key, signature, found)
        return found

    async def _remote_find(self, key: str) -> Found | None:
        try:
            info = await self.store.info(key)
        except NotFound:
            return None
        return Found(key, info.size, info.etag, info.last_modified)

    def _remember(self, key: str, signature: tuple[int, int, int], found: Found) -> None:
        """Keep ``found`` for the next request, within the entry and byte budgets."""
        size = _weight(key, found)
        if len(self._local) >= LOCAL_ENTRIES or self._local_bytes + size > BODY_BUDGET:
            self._local.clear()
            self._local_bytes = 0
        previous = self._local.get(key)
        if previous is not None:
            self._local_bytes -= _weight(key, previous[1])
        self._local[key] = (signature, found)
        self._local_bytes += size


def _weight(key: str, found: Found) -> int:
    """Bytes one remembered file costs: its key (twice: the dict's and the path's), the
    headers and objects around it, and its body when kept."""
    return 2 * len(key) + ENTRY_BYTES + (len(found.body) if found.body is not None else 0)


def _read_small(path: str) -> tuple[bytes | None, os.stat_result] | None:
    """A small file's bytes and the stat of exactly those bytes (one descriptor for both).

    None when it is gone; no bytes when it changed while being read (served from disk then).
    """
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        raise StoreUnavailable(str(exc)) from exc
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            return None
        data = os.read(descriptor, status.st_size + 1)
    except OSError as exc:
        raise StoreUnavailable(str(exc)) from exc
    finally:
        os.close(descriptor)
    return (data if len(data) == status.st_size else None), status


class Found:
    """A docs object and its response headers (all but the security set and the length).

    Small local files carry their ``body``: sending bytes already in memory is cheaper than
    the pathsend extension below ~64 KB.
    """

    __slots__ = ("body", "etag", "headers", "last_modified", "length", "local_path")

    def __init__(
        self,
        key: str,
        size: int,
        etag: str | None,
        last_modified: datetime,
        local_path: str | None = None,
        body: bytes | None = None,
    ) -> None:
        self.etag = etag
        self.last_modified = last_modified
        self.local_path = local_path
        self.body = body
        self.length = (b"content-length", str(size).encode())
        headers: Headers = [*content_headers(key)]
        headers.append((b"last-modified", http_datetime(last_modified).encode()))
        if etag:
            headers.append((b"etag", etag.encode("latin-1")))
        self.headers = headers


def _conditional(scope: Scope) -> bool:
    return any(name in CONDITIONAL for name, _ in scope["headers"])


def _not_modified(scope: Scope, found: Found) -> bool:
    headers = dict(scope["headers"])
    return not_modified(
        _header(headers, b"if-none-match"),
        _header(headers, b"if-modified-since"),
        found.etag,
        found.last_modified,
    )


def _safe_path(scope: Scope) -> str | None:
    """The decoded request path, or None when it could name something outside a project."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    raw = raw.split(b"?", 1)[0]
    if b"%" in raw:
        lowered = raw.lower()
        if any(escape in lowered for escape in HOSTILE_ESCAPES):
            return None
    try:
        path = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not path.startswith("/") or "\x00" in path or "\\" in path or "//" in path:
        return None
    # Every "." or ".." segment contains "/." (the path starts with "/"): split only then.
    if "/." in path and any(part in (".", "..") for part in path.split("/")):
        return None
    return path


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


async def _moved(scope: Scope, send: Send, status: int, location: str) -> int:
    """A redirect; ``location`` is re-escaped only where it is not ASCII-safe already."""
    header = (b"location", quote(location, safe=PATH_SAFE + "%#?[]").encode("ascii"))
    await reply(send, scope, status, "Moved Permanently" if status == 301 else "Found", [header])
    return status
