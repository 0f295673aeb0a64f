"""Serving one stored object over HTTP: validators, ranges, HEAD and the cheapest body route.

The files edge and docs hosting both answer with objects from a store; this is the one place
that decides 304, 206 or 416, and how the bytes go out:

- bodies already in memory (the caller's, or the byte-bounded cache of small objects and of
  ranges clients repeat; an object is read into the cache only while the bodies being read
  in at once fit the cache's budget, see :meth:`ObjectResponder._fill`) go out as they are,
  large ones as the pieces the cache keeps them in (no copy on our side; the server copies
  each message once), one piece in the server at a time, small ones until the client has
  shown it reads fast (:func:`_send_pieces`);
- other local files are read with ``pread`` on the loop: a small range in one read (a
  page-cache read of a few KB costs less than a thread hop; installers' suffix reads of wheel
  directories are exactly this), anything larger as a paced stream (:func:`send_file`);
- everything else streams from the store.

Reading fails before the head is sent (the caller answers 404 or 503); a store failing
mid-body propagates: with the headers out, cutting the connection short is the only honest
answer, and the client sees it from Content-Length.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeVar

from pythonhosted.coalesce import Coalescer
from pythonhosted.web.allocator import trim_heap
from pythonhosted.web.bodycache import Body, BodyCache, Pieces
from pythonhosted.web.departure import departure
from pythonhosted.web.h1.quick import header_lines
from pythonhosted.web.http import Unsatisfiable, if_range_holds, not_modified, parse_range
from pythonhosted.web.request import Request
from pythonhosted.web.responses import send_response, wait_until_written
from pythonhosted.web.streams import Busy, StreamSlots
from pythonhosted.web.types import Headers, Message, Receive, Send

PREAD_MAX = 256 * 1024
SEND_PIECE = 2**20  # a body in memory: what one message carries (see _send_pieces)
PROBE_PIECE = 16 * 1024  # ... until the client has shown it keeps up
PROBE_BYTES = 512 * 1024  # that many, then pieces double (at most SEND_PIECE)
KEEPS_UP = 512 * 1024  # bytes/s: a client taking pieces slower gets small pieces again
PACE = 0.1  # seconds: past the small pieces, a piece is at most what the client takes in this
NOT_SLOW = 0.25  # seconds: a piece taken within this is never slow (the loop's turn under load)
# A file streamed from disk: small pieces until the client has shown it keeps up (see
# send_file), then large ones.
FILE_PIECE_SLOW = 4 * 1024
FILE_PIECE_FAST = 256 * 1024
FILE_RAMP_BYTES = 8 * 2**20
FULL_QUEUE_SENDS = 8  # sends in a row finding the client's queue full: a slow client (3: flaps)
PAUSE_BYTES = 256 * 1024  # a file stream lets the loop turn at least this often
TEXT = b"text/plain; charset=UTF-8"
# A stream that finds every slot taken (pythonhosted.web.streams) waits this long, then 503.
STREAM_WAIT = 10.0
RETRY_AFTER = b"5"
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
        "_head",
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
        self._head: dict[int, bytes | None] = {}  # ... as the head of a quick answer

    def whole_headers(self, security: Headers, extra: Headers) -> Headers:
        """Every header of a 200 with the whole body, built once per object and security list
        (the lists are module constants, so their identities are few: hot path)."""
        headers = self._whole.get(id(security))
        if headers is None:
            length = (b"content-length", str(self.size).encode())
            headers = self._whole[id(security)] = [*security, *self.headers, *extra, length]
        return headers

    def whole_head(self, security: Headers, extra: Headers) -> bytes | None:
        """:meth:`whole_headers` as the status line and header lines of a quick answer
        (:mod:`pythonhosted.web.h1.quick`), built once; None when a value holds CR, LF or NUL
        (the ASGI path then refuses it, answering 500)."""
        key = id(security)
        try:
            return self._head[key]
        except KeyError:
            pass
        lines = header_lines(self.whole_headers(security, extra))
        head = self._head[key] = None if lines is None else b"HTTP/1.1 200 OK\r\n" + lines
        return head


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
        streams: StreamSlots | None = None,
    ) -> None:
        self.bodies = bodies
        self.cors = cors or []
        self.error_headers = error_headers or []
        self.streams = streams or StreamSlots()  # the service's pool (web.streams.slots_of)
        self._filling: Coalescer[str, Body] = Coalescer()
        self._filling_bytes = 0  # of the bodies being read into memory now
        self._fast = FastConnections()
        self._paced = 0  # bodies going out in pieces now
        self._cut = False  # one of them was cut into pieces for a slow client

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
        # The body, by the cheapest route: memory, pread, a paced file stream, or the store
        # (inline, not a method of its own: an await level costs the hot path ~0.3 us).
        bodies = self.bodies if use_cache else None
        body: Body | None = obj.body
        if body is None and bodies is not None and bodies.fits(obj.size):
            body = bodies.get(obj.key) or await self._fill(bodies, obj)
        if body is not None:
            await send(head)
            if on_body is not None:
                on_body(request, obj)
            if span is None and type(body) is bytes:
                await send({"type": "http.response.body", "body": body})
            else:
                await self._send_memory(request, send, body, *(span or (0, len(body))))
            return
        path = obj.local_path
        if path is not None and span is not None and span[1] - span[0] <= PREAD_MAX:
            await self._send_pread(request, send, obj, path, head, span, bodies, on_body)
            return
        # A stream holds a descriptor (a file, a store connection) as long as the client reads.
        streams = self.streams
        if not streams.take_now():
            try:
                await streams.take(STREAM_WAIT)
            except Busy:
                await self._send_busy(send, security, request.head)
                return
        try:
            await self._send_stream(request, send, obj, head, span, on_body)
        finally:
            streams.give_back()

    async def _send_stream(
        self,
        request: Request,
        send: Send,
        obj: Obj,
        head: Message,
        span: tuple[int, int] | None,
        on_body: Callable[[Request, Obj], None] | None,
    ) -> None:
        path = obj.local_path
        if path is not None:
            start, end = span or (0, obj.size)
            descriptor = os.open(path, os.O_RDONLY)  # OSError before the head: the caller's
            try:
                await send(head)
                if on_body is not None:
                    on_body(request, obj)
                with _departure(request.receive) as gone:
                    await send_file(send, descriptor, start, end, gone)
            finally:
                os.close(descriptor)
            return
        chunks = await obj.store.read(obj.key, *(span or (None, None)))
        await send(head)
        if on_body is not None:
            on_body(request, obj)
        with _departure(request.receive) as gone:
            async for chunk in chunks:
                if gone.done():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _send_busy(self, send: Send, security: Headers, head: bool) -> None:
        await send_response(
            send,
            503,
            b"Busy: too many downloads in progress; retry shortly\n",
            content_type=TEXT,
            headers=[*security, *self.error_headers, (b"retry-after", RETRY_AFTER)],
            head=head,
        )

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
        chunk = cached if type(cached) is bytes else _pread(path, span[0], span[1] - span[0])
        if bodies is not None and cached is None:  # _pread's OSError: the caller's
            bodies.put(obj.key, chunk, *span)
        await send(head)
        if on_body is not None:
            on_body(request, obj)
        await send({"type": "http.response.body", "body": chunk})

    async def _send_memory(
        self, request: Request, send: Send, body: Body, start: int, end: int
    ) -> None:
        """Bytes ``[start, end)`` of a body in memory: in one message up to ``PROBE_BYTES``
        (and a ``bytes`` body up to ``SEND_PIECE``: the cache keeps those whole, and cutting
        them would cost every fast client copies), else paced (:func:`_send_pieces`),
        remembering whether the connection kept up."""
        if end - start <= SEND_PIECE and (end - start <= PROBE_BYTES or type(body) is bytes):
            piece = body.slice(start, end) if isinstance(body, Pieces) else body[start:end]
            await send({"type": "http.response.body", "body": piece})
            return
        connection = request.scope.get("client")
        proven = connection is not None and connection in self._fast
        self._paced += 1
        kept_up = False
        try:
            kept_up = await _send_pieces(send, body, start, end, proven, request.receive)
        finally:
            self._paced -= 1
            if kept_up:
                self._fast.add(connection)
            else:
                self._fast.discard(connection)
                self._cut = True
            if self._cut and not self._paced:
                self._cut = False
                trim_heap()  # the slow clients' pieces are gone: so is the heap they grew

    async def _fill(self, bodies: BodyCache, obj: StoredObject) -> Body | None:
        """The whole body into memory, read and split once however many requests wait for it
        (split per request, 20 slow first readers of a 12 MB wheel held 20 copies); None,
        for the caller to stream it, when the bodies being read in already fill the cache's
        budget. Each read holds its object whole (and a copy, briefly), and nothing bounded
        how many ran at once: 100 cold requests for 100 distinct 12 MB wheels took the edge
        from 66 MB to a 2.2 GB peak, for a cache of 128 MB (now 220-360 MB,
        ``bench/files_cold.py``)."""
        key = obj.key
        if not self._filling.busy(key) and not self.start_reading(bodies, obj.size):
            return None
        body = await self._filling.run(key, lambda: self._read_counted(obj))
        bodies.put(key, body)
        return body

    async def _read_counted(self, obj: StoredObject) -> Body:
        try:
            return await _read_body(obj.store, obj.key)
        finally:
            self.done_reading(obj.size)

    def start_reading(self, bodies: BodyCache, size: int) -> bool:
        """Count ``size`` more bytes read into memory for ``bodies``, or False (nothing
        counted) when the bodies being read in already fill its budget. Counted at once, not
        when the read gets its turn, so a burst cannot all pass the check first."""
        if self._filling_bytes + size > bodies.max_bytes:
            return False
        self._filling_bytes += size
        return True

    def done_reading(self, size: int) -> None:
        self._filling_bytes -= size

    def forget(self, key: str) -> None:
        """Drop every cached body and range of ``key`` (a purge, or the object is gone)."""
        if self.bodies is not None:
            self.bodies.discard(key)


async def _read_body(store: Source, key: str) -> Body:
    """An object's bytes as the memory cache keeps them: one ``bytes``, or pieces to send."""
    data = await store.get_bytes(key)
    return data if len(data) <= SEND_PIECE else Pieces(data, SEND_PIECE, PROBE_PIECE, PROBE_BYTES)


async def _send_pieces(
    send: Send, body: Body, start: int, end: int, proven: bool, receive: Receive | None
) -> bool:
    """Bytes ``[start, end)`` of a body in memory, in pieces of which the server holds one at
    a time, small ones (``PROBE_PIECE``) until the client has shown it reads fast; whether it
    took every large piece fast (:class:`FastConnections`).

    granian copies every message and keeps the copy until the kernel has taken all of it;
    per connection it queues four messages besides the one it is writing and one waiting to
    get in. So after each piece but the last go empty messages
    (:func:`~pythonhosted.web.responses.wait_until_written`): they hold no bytes, the server
    drops them unwritten, and it takes the first only once the piece before it is written (but
    for its few KB of write buffer), so the last can only go in, and its send complete, once
    the piece is out: that is when the next piece is cut.

    What a client that stops reading leaves in the server is the piece it stopped in. The
    kernel takes the first bytes of any client at once (its receive window and our send
    buffer: a few hundred KB on loopback at first), so a new client cannot be told from a
    fast one before that: its first ``PROBE_BYTES`` go in
    ``PROBE_PIECE`` pieces (``proven``: a connection that took a body fast before starts on
    large ones), and the rest in pieces that double up to ``SEND_PIECE``, each at most what
    the client took in ``PACE`` seconds at its pace so far (the kernel's part grows while a
    client reads: on loopback some readers of 160 KB/s had 1 MB queued for them within a
    second, each piece taken at once, and then held a 1 MB piece: 200-310 KB per connection
    without this bound, ~56 KB with it). A piece taken slower than ``KEEPS_UP`` bytes/s (and
    ``NOT_SLOW``), or small pieces that together were, put the client back on small pieces for
    the next ``PROBE_BYTES``. A slow client holds one small piece; a fast one pays
    one wait per piece: 1 MB pieces cost ~10 % less CPU per byte than 512 KB ones and ~25 %
    less than 256 KB ones, a small piece ~35 us (BENCHMARKS.md).
    """
    part_end = body.part_end if isinstance(body, Pieces) else None
    offset, kept_up, probe_from, probe_began = start, True, start, time.monotonic()
    first_began = probe_began
    with contextlib.ExitStack() as watching:
        gone: asyncio.Future[None] | None = None  # watched once pieces are small
        probe_until = start if proven else start + PROBE_BYTES
        size = SEND_PIECE if proven else PROBE_PIECE  # past the small pieces: doubles up to this
        while True:
            small = offset < probe_until
            if small:
                stop = min(offset + PROBE_PIECE, end)  # in the head: a stored part, else a copy
            else:  # doubling, and at most what the client took in PACE at its pace so far
                size = min(2 * size, SEND_PIECE)
                if offset > start:
                    pace = (offset - start) / (time.monotonic() - first_began) * PACE
                    size = max(PROBE_PIECE, min(size, int(pace)))
                stop = min(offset + size, end)
                if part_end is not None:
                    stop = min(part_end(offset), stop)  # a stored piece whole: not copied
            if gone is None and stop - offset < SEND_PIECE and stop < end:
                # granian takes what is sent to a client that left at once: small pieces
                # cut for nobody would cost CPU for seconds (a megabyte costs a few sends)
                gone = watching.enter_context(_departure(receive))
            piece = body.slice(offset, stop) if isinstance(body, Pieces) else body[offset:stop]
            began = time.monotonic()
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            del piece
            if stop >= end:
                break
            await wait_until_written(send)
            now = time.monotonic()
            took = now - began
            slow = took > NOT_SLOW and took * KEEPS_UP > stop - offset
            if small and stop >= probe_until:  # and the small pieces together: the kernel took
                slow = slow or (now - probe_began) * KEEPS_UP > stop - probe_from  # some at once
            if slow:  # small pieces until it shows it is fast again
                probe_until, probe_from, probe_began, kept_up = stop + PROBE_BYTES, stop, now, False
                size = PROBE_PIECE
            if gone is not None and gone.done():
                return False
            offset = stop
    await send({"type": "http.response.body", "body": b""})
    return kept_up


class FastConnections:
    """Client connections (address and port) that took their last body from memory fast,
    so that the next body on the same kept-alive connection starts on large pieces: probing
    costs ~40 more waits (1-3 ms of CPU under load), once per connection instead of once per
    body. The most recent ``LIMIT``.

    A port reused by a new connection that is slow costs one large piece held until its
    first piece shows it slow.
    """

    LIMIT = 4096

    def __init__(self) -> None:
        self._recent: OrderedDict[object, None] = OrderedDict()

    def __contains__(self, connection: object) -> bool:
        return connection in self._recent

    def add(self, connection: object) -> None:
        if connection is None:
            return
        self._recent[connection] = None
        self._recent.move_to_end(connection)
        if len(self._recent) > self.LIMIT:
            self._recent.popitem(last=False)

    def discard(self, connection: object) -> None:
        self._recent.pop(connection, None)


@contextlib.contextmanager
def _departure(receive: Receive | None) -> Iterator[asyncio.Future[None]]:
    """A future done once the client hangs up, for as long as a long body goes out.

    granian's ``send`` does not fail when the client is gone (it drops what it is given), so
    without this a 100 MB stream would be read to its end for nobody.
    """

    async def watch() -> None:
        if receive is None:
            await asyncio.Future()  # never: nothing to watch
            return
        await departure(receive)

    watcher = asyncio.ensure_future(watch())
    try:
        yield watcher
    finally:
        watcher.cancel()


async def send_file(
    send: Send,
    descriptor: int,
    start: int,
    end: int,
    gone: asyncio.Future[None],
    slow_piece: int = FILE_PIECE_SLOW,
) -> None:
    """Bytes ``[start, end)`` of an open local file, read with ``pread`` piece by piece.

    What a connection holds is the server's queue: up to four messages waiting plus its write
    buffer, for as long as the client takes to read them. A slow client would keep four large
    pieces there for seconds, so pieces start small (4 KB: about 50 KB per connection in all,
    granian's own ~20 KB included; 8 KB pieces and a 16 KB write buffer: ~90 KB) and become
    large (fewer sends per byte) only once the first ``FILE_RAMP_BYTES`` went out without the
    client's queue filling up: on loopback the kernel alone takes the first ~4 MB of any
    client at once, so only a client that keeps reading past that proves it is fast.
    ``FULL_QUEUE_SENDS`` sends in a row that found the queue full make pieces small again
    until the client proves itself anew. (camo's cached images, 256 KB to 5 MB, never reach
    the ramp: ``slow_piece`` 16 KB costs them a third of the CPU of 4 KB pieces, for ~100 KB
    per slow connection.)

    A full queue is what granian's ``send`` says: it returns a pending future only when the
    message must wait for room (otherwise an awaitable that is already done). How long a send
    takes is no signal: under load that is mostly the loop's turn, and with "slower than
    5 ms" every fast download among 64 counted as slow and went out in 4 KB pieces, ~36x
    nginx's CPU per byte (BENCHMARKS.md).

    The server's pathsend did this in a thread per 128 KB read, holding ~300 KB per slow
    connection. Sequential ``pread``s on one descriptor keep the kernel's read-ahead going, so
    reads rarely wait for the disk.
    """
    offset, fast, fast_from, full_in_a_row = start, False, start + FILE_RAMP_BYTES, 0
    pause_at = start + PAUSE_BYTES
    while offset < end:
        if offset >= pause_at:
            # A send the server takes at once does not yield to the loop (nor does one to a
            # client that left): let other requests, and the departure watch, have a turn.
            await asyncio.sleep(0)
            pause_at = offset + PAUSE_BYTES
        if gone.done():
            return
        size = min(FILE_PIECE_FAST if fast else slow_piece, end - offset)
        piece = os.pread(descriptor, size, offset)
        if len(piece) != size:
            raise OSError(f"short read at {offset}: the file shrank")
        sending = send({"type": "http.response.body", "body": piece, "more_body": True})
        del piece  # held by the message only until the server copies it
        done = getattr(sending, "done", None)
        full_in_a_row = full_in_a_row + 1 if done is not None and not done() else 0
        await sending
        offset += size
        if full_in_a_row >= FULL_QUEUE_SENDS:
            fast, fast_from = False, offset + FILE_RAMP_BYTES  # slow now: prove it again
        elif offset >= fast_from:
            fast = True
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
