"""pythonhosted.org: project docs served from a store (spec rules 9-13).

A project's files are those of the site its pointer names (:mod:`.sites`), or, for a project
no upload has given a pointer yet, the keys ``{project}/{path}``; ``index.html`` at the store's
root is the front page. On a local store the hot path is two ``stat`` calls (the pointer and
the file), then small files from memory and the rest read with ``pread``; other stores stream
the object in chunks, and a project's pointer is read again at most every ``POINTER_TTL``.
Validators, ranges and the body route are the shared responder's
(:mod:`pythonhosted.web.objects`), as on the files edge."""

from __future__ import annotations

import logging
import os
import stat
import time
from datetime import UTC, datetime
from urllib.parse import quote

from pythonhosted.boundedlog import failure_log
from pythonhosted.coalesce import Coalescer
from pythonhosted.conveyor.content import content_headers
from pythonhosted.conveyor.redirects import RedirectTable
from pythonhosted.conveyor.replies import reply, security_headers
from pythonhosted.conveyor.sites import (
    POINTER_BYTES,
    BadPointer,
    load_pointer,
    pointer_key,
    site_prefix,
)
from pythonhosted.objectkeys import check_key, path_of
from pythonhosted.storage import DirectoryStore, NotFound, Store, StoreUnavailable
from pythonhosted.web.http import http_datetime
from pythonhosted.web.objects import ObjectResponder, StoredObject
from pythonhosted.web.request import Request
from pythonhosted.web.streams import slots_of
from pythonhosted.web.types import Headers, Scope, Send

log = logging.getLogger(__name__)

PATH_SAFE = "/:@!$&'()*+,;=~"
LOCAL_ENTRIES = 10_000  # local files whose headers are kept; cleared wholesale when full
SMALL_BODY = 64 * 1024  # local files up to this size are kept in memory too...
BODY_BUDGET = 64 * 1024 * 1024  # ...up to this many bytes in all, keys and headers included
ENTRY_BYTES = 1024  # what an entry holds besides its key and body (headers, objects)
# A remote store's pointers are kept this long (seconds): far below the grace period a
# replaced site is kept for (docs_keep_replaced), so a request never follows a pointer to a
# site already removed.
POINTER_TTL = 1.0


class DocsSite:
    def __init__(self, store: Store, redirects: RedirectTable) -> None:
        self.store = store
        self.redirects = redirects
        self._failures = failure_log(log, "docs store")
        # A local directory is stat'ed directly on the hot path (cheaper than a thread hop).
        root = store.root if isinstance(store, DirectoryStore) else None
        self._root = str(root).rstrip("/") + "/" if root is not None else None
        self._local: dict[str, tuple[tuple[int, int, int], Found]] = {}
        self._local_bytes = 0
        self._lookups: Coalescer[str, Found | None] = Coalescer()
        # project -> (pointer's stat signature, or expiry time on a remote store; its folder)
        self._folders: dict[str, tuple[object, str]] = {}
        self._pointer_lookups: Coalescer[str, str] = Coalescer()
        # small local bodies are kept by _find itself
        self.responder = ObjectResponder(streams=slots_of("conveyor"))

    async def answer(self, request: Request, send: Send) -> None:
        """Send the response to a docs request."""
        scope = request.scope
        path = _safe_path(scope)
        if path is None:
            await reply(send, scope, 404, "Not Found")
            return
        if path == "/":
            await self._serve(request, send, None, "index.html")
            return
        project, slash, rest = path[1:].partition("/")
        if not slash:
            await _moved(scope, send, 301, f"/{project}/")
            return
        redirect = self.redirects.get(project)
        if redirect is not None:
            await _moved(scope, send, 302, redirect.location(rest))
            return
        if project.startswith("."):  # the store's own folders (sites, sidecars): no project's
            await reply(send, scope, 404, "Not Found")
            return
        await self._serve(request, send, project, rest)

    async def _serve(self, request: Request, send: Send, project: str | None, rest: str) -> None:
        """Answer for ``rest`` in ``project``'s site (the store's root when None)."""
        scope = request.scope
        try:
            folder = "" if project is None else await self._folder(project)
            key = folder + (rest + "index.html" if rest == "" or rest.endswith("/") else rest)
            check_key(key)
            found = await self._find(key)
            if (
                found is None
                and project is not None
                and rest
                and not rest.endswith("/")
                and await self._find(key + "/index.html")
            ):
                await _moved(scope, send, 301, f"/{project}/{rest}/")
                return
        except ValueError:
            found = None
        except StoreUnavailable as exc:
            self._failures.note(
                logging.WARNING, "unavailable", "docs store could not answer for %s: %s", rest, exc
            )
            await reply(send, scope, 503, "Storage unavailable")
            return
        if found is None:
            await reply(send, scope, 404, "Not Found")
            return
        try:
            await self.responder.respond(request, send, found, security_headers(scope))
        except NotFound:
            await reply(send, scope, 404, "Not Found")
        except (StoreUnavailable, OSError) as exc:
            self._failures.note(
                logging.WARNING, "read_failed", "docs read of %s failed: %s", found.key, exc
            )
            await reply(send, scope, 503, "Storage unavailable")

    async def _folder(self, project: str) -> str:
        """The folder ``project``'s files are read from (see the module docstring)."""
        if self._root is None:
            now = time.monotonic()
            cached = self._folders.get(project)
            if cached is not None and isinstance(cached[0], float) and cached[0] > now:
                return cached[1]
            folder = await self._pointer_lookups.run(project, lambda: self._remote_folder(project))
            self._keep_folder(project, now + POINTER_TTL, folder)
            return folder
        # Stat'ed on every request, as the files are, so an upload is visible at once; read
        # only when it changed (an upload replaces it whole, so with a new inode).
        full = self._root + pointer_key(project)
        try:
            status = os.stat(full)
        except (FileNotFoundError, NotADirectoryError):
            return f"{project}/"
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        signature = (status.st_mtime_ns, status.st_size, status.st_ino)
        cached = self._folders.get(project)
        if cached is not None and cached[0] == signature:
            return cached[1]
        if status.st_size > POINTER_BYTES:
            raise StoreUnavailable(f"{pointer_key(project)}: not a docs site pointer")
        small = _read_small(full)
        if small is None:
            return f"{project}/"
        data, status = small
        folder = _folder_of(project, data)
        self._keep_folder(project, (status.st_mtime_ns, status.st_size, status.st_ino), folder)
        return folder

    async def _remote_folder(self, project: str) -> str:
        try:
            data = await self.store.get_bytes(pointer_key(project))
        except NotFound:
            return f"{project}/"
        return _folder_of(project, data)

    def _keep_folder(self, project: str, validity: object, folder: str) -> None:
        if len(self._folders) >= LOCAL_ENTRIES:
            self._folders.clear()
        self._folders[project] = (validity, folder)

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
            self.store,
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
        return Found(key, info.size, info.etag, info.last_modified, self.store)

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


def _folder_of(project: str, pointer: bytes | None) -> str:
    """The folder ``pointer`` (a pointer object's bytes) names."""
    try:
        if pointer is None:
            raise BadPointer("changed while read")
        return site_prefix(project, load_pointer(pointer).site)
    except BadPointer as exc:
        raise StoreUnavailable(f"{pointer_key(project)}: {exc}") from None


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


class Found(StoredObject):
    """A docs object and its response headers (all but the security set and the length).

    Small local files carry their ``body``: sending bytes already in memory saves opening the
    file again.
    """

    __slots__ = ()

    def __init__(
        self,
        key: str,
        size: int,
        etag: str | None,
        last_modified: datetime,
        store: Store,
        local_path: str | None = None,
        body: bytes | None = None,
    ) -> None:
        headers: Headers = [*content_headers(key)]
        headers.append((b"last-modified", http_datetime(last_modified).encode()))
        if etag:
            headers.append((b"etag", etag.encode("latin-1")))
        super().__init__(key, size, etag, last_modified, headers, store, local_path, body)


def _safe_path(scope: Scope) -> str | None:
    """The decoded request path, or None when it could name something outside a project."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    return path_of(raw.split(b"?", 1)[0])


async def _moved(scope: Scope, send: Send, status: int, location: str) -> None:
    """A redirect; ``location`` is re-escaped only where it is not ASCII-safe already."""
    header = (b"location", quote(location, safe=PATH_SAFE + "%#?[]").encode("ascii"))
    await reply(send, scope, status, "Moved Permanently" if status == 301 else "Found", [header])
