"""Serving one stored object over HTTP: validators, ranges, HEAD and the cheapest body route.

The files edge and docs hosting both answer with objects from a store; this is the one place
that decides 304, 206 or 416, and how the bytes go out:

- bodies already in memory (the caller's, or the byte-bounded cache of small objects and of
  ranges clients repeat) are sent in 256 KB pieces, so no connection holds a whole copy;
- other local files go by the server's pathsend extension when whole, by ``pread`` when a
  small range (a page-cache read of a few KB costs less than a thread hop; installers' suffix
  reads of wheel directories are exactly this);
- everything else streams from the store.

Reading fails before the head is sent (the caller answers 404 or 503); a store failing
mid-body propagates: with the headers out, cutting the connection short is the only honest
answer, and the client sees it from Content-Length.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeVar

from pythonhosted.coalesce import Coalescer
from pythonhosted.web.bodycache import BodyCache
from pythonhosted.web.http import Unsatisfiable, if_range_holds, not_modified, parse_range
from pythonhosted.web.request import Request
from pythonhosted.web.responses import send_response
from pythonhosted.web.types import Headers, Send

PREAD_MAX = 256 * 1024
SEND_PIECE = 256 * 1024
TEXT = b"text/plain; charset=UTF-8"
_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since"})


class Source(Protocol):
    """Where an object's bytes come from: a store (:class:`pythonhosted.storage.Store`)."""

    async def read(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]: ...

    async def get_bytes(self, key: str) -> bytes: ...


class StoredObject:
    """An object as the responder serves it, with its own headers (type, caching, validators,
    whatever the service adds; not the length, security or CORS ones), built once."""

    __slots__ = (
        "_whole",
        "body",
        "etag",
        "headers",
        "key",
        "last_modified",
        "local_path",
        "size",
        "store",
    )

    def __init__(
        self,
        key: str,
        size: int,
        etag: str | None,
        last_modified: datetime,
        headers: Headers,
        store: Source,
        local_path: Path | str | None = None,
        body: bytes | None = None,
    ) -> None:
        self.key = key
        self.size = size
        self.etag = etag
        self.last_modified = last_modified
        self.headers = headers
        self.store = store
        self.local_path = str(local_path) if local_path is not None else None
        self.body = body  # the bytes, when the caller already holds them
        self._whole: dict[int, Headers] = {}  # a full 200's headers, by security list

    def whole_headers(self, security: Headers, extra: Headers) -> Headers:
        """Every header of a 200 with the whole body, built once per object and security list
        (the lists are module constants, so their identities are few: hot path)."""
        headers = self._whole.get(id(security))
        if headers is None:
            length = (b"content-length", str(self.size).encode())
            headers = self._whole[id(security)] = [*security, *self.headers, *extra, length]
        return headers


Obj = TypeVar("Obj", bound=StoredObject)


class ObjectResponder:
    """``cors``: headers of 200/206 answers; ``error_headers``: what 304 and 416 add to the
    security set (the files edge's X-Permitted-Cross-Domain-Policies); ``bodies``: the memory
    cache, or None."""

    def __init__(
        self,
        bodies: BodyCache | None = None,
        *,
        cors: Headers | None = None,
        error_headers: Headers | None = None,
    ) -> None:
        self.bodies = bodies
        self.cors = cors or []
        self.error_headers = error_headers or []
        self._filling: Coalescer[str, bytes] = Coalescer()

    @staticmethod
    def not_modified(request: Request, obj: StoredObject) -> bool:
        """Whether the request's validators say the client's copy is current (304)."""
        headers = request.headers
        if not (headers.keys() & _CONDITIONAL):
            return False
        return not_modified(
            request.header(b"if-none-match"),
            request.header(b"if-modified-since"),
            obj.etag,
            obj.last_modified,
        )

    async def send_not_modified(self, send: Send, obj: StoredObject, security: Headers) -> None:
        await send_response(send, 304, headers=[*security, *obj.headers, *self.error_headers])

    async def respond(
        self,
        request: Request,
        send: Send,
        obj: Obj,
        security: Headers,
        *,
        validated: bool = False,
        use_cache: bool = True,
        on_body: Callable[[Request, Obj], None] | None = None,
    ) -> None:
        """Answer a GET or HEAD for ``obj``: 304, 416, or 200/206 with the body.

        ``validated``: the caller already checked the validators (no 304 is due).
        ``on_body(request, obj)`` runs once the body is sure to follow (a GET's head is
        about to go out), e.g. to log a download. StorageError when the bytes cannot be
        read, before any head.
        """
        if not validated and self.not_modified(request, obj):
            await self.send_not_modified(send, obj, security)
            return
        try:
            span = parse_range(request.header(b"range"), obj.size)
            if span is not None and not if_range_holds(
                request.header(b"if-range"), obj.etag, obj.last_modified
            ):
                span = None  # the client's copy is another version: send the whole object
        except Unsatisfiable:
            await send_response(
                send,
                416,
                b"Range not satisfiable\n",
                content_type=TEXT,
                headers=[
                    *security,
                    *self.error_headers,
                    (b"content-range", f"bytes */{obj.size}".encode()),
                ],
                head=request.head,
            )
            return
        if span is None:
            status = 200
            headers = obj.whole_headers(security, self.cors)
        else:
            status, (start, end) = 206, span
            headers = [
                *security,
                *obj.headers,
                *self.cors,
                (b"content-range", f"bytes {start}-{end - 1}/{obj.size}".encode()),
                (b"content-length", str(end - start).encode()),
            ]
        head = {"type": "http.response.start", "status": status, "headers": headers}
        if request.head:
            await send(head)
            await send({"type": "http.response.body", "body": b""})
            return
        # The body, by the cheapest route: memory, the server's pathsend, pread, or a stream
        # (inline, not a method of its own: an await level costs the hot path ~0.3 us).
        bodies = self.bodies if use_cache else None
        body = obj.body
        if body is None and bodies is not None and bodies.fits(obj.size):
            body = bodies.get(obj.key) or await self._fill(bodies, obj)
        if body is not None:
            await send(head)
            if on_body is not None:
                on_body(request, obj)
            if span is None and len(body) <= SEND_PIECE:
                await send({"type": "http.response.body", "body": body})
            else:
                view = memoryview(body) if span is None else memoryview(body)[span[0] : span[1]]
                await _send_view(send, view)
            return
        path = obj.local_path
        if path is not None and span is None and _pathsend(request):
            await send(head)
            if on_body is not None:
                on_body(request, obj)
            await send({"type": "http.response.pathsend", "path": path})
            return
        if path is not None and span is not None and span[1] - span[0] <= PREAD_MAX:
            await self._send_pread(request, send, obj, path, head, span, bodies, on_body)
            return
        chunks = await obj.store.read(obj.key, *(span or (None, None)))
        await send(head)
        if on_body is not None:
            on_body(request, obj)
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _send_pread(
        self,
        request: Request,
        send: Send,
        obj: Obj,
        path: str,
        head: dict[str, object],
        span: tuple[int, int],
        bodies: BodyCache | None,
        on_body: Callable[[Request, Obj], None] | None,
    ) -> None:
        cached = bodies.get(obj.key, *span) if bodies is not None else None
        chunk = cached or _pread(path, span[0], span[1] - span[0])  # OSError: the caller's
        if bodies is not None and cached is None:
            bodies.put(obj.key, chunk, *span)
        await send(head)
        if on_body is not None:
            on_body(request, obj)
        await send({"type": "http.response.body", "body": chunk})

    async def _fill(self, bodies: BodyCache, obj: StoredObject) -> bytes:
        """The whole body into memory, read once however many requests wait for it."""
        key = obj.key
        body = await self._filling.run(key, lambda: obj.store.get_bytes(key))
        bodies.put(key, body)
        return body

    def forget(self, key: str) -> None:
        """Drop every cached body and range of ``key`` (a purge, or the object is gone)."""
        if self.bodies is not None:
            self.bodies.discard(key)


def _pathsend(request: Request) -> bool:
    return "http.response.pathsend" in (request.scope.get("extensions") or {})


async def _send_view(send: Send, view: memoryview) -> None:
    """Send cached bytes in pieces: the server copies each message, so one message per
    response would cost a whole copy of the object per connection."""
    if len(view) <= SEND_PIECE:
        await send({"type": "http.response.body", "body": view.tobytes()})
        return
    for offset in range(0, len(view), SEND_PIECE):
        piece = view[offset : offset + SEND_PIECE].tobytes()
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _pread(path: str, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    if len(data) != length:
        raise OSError(f"short read from {path}")
    return data
