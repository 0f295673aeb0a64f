"""A lean HTTP/1.1 client for upstream fetches: camo's own framing around llhttp's parser.

aiohttp's client cost ~77 µs of CPU per proxied image against ~16 µs for a minimal keep-alive
exchange, and camo needs little of it: GET and HEAD, no request body, no cookies, no
decompression. What camo needs instead is control: the socket goes to exactly the address the
policy checked (no second lookup), a pooled connection is reused only for that same address,
and a response that is malformed, unbounded or framed ambiguously is refused, never guessed at.

Responses are parsed by httptools (Node's llhttp, strict mode: no lenient flags are set), so
request smuggling tricks (Content-Length with Transfer-Encoding, duplicate lengths, bare LF,
obsolete line folding) are parse errors. The request is serialised here because it is tiny and
built only from checked parts (a yarl URL, allow-listed headers).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

import httptools
from yarl import URL

#: Bytes read from the socket at a time (into one buffer the Upstream's connections share:
#: llhttp copies out what it keeps). While a body chunk waits for the relay the socket is not
#: read, so at most this much is read ahead of what the relay has sent (back-pressure reaches
#: the upstream through TCP).
READ_SIZE = 32 * 1024
#: Bounds on the header section: past either the response is a bad upstream (502).
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
#: Idle keep-alive connections kept per Upstream, and how long one may stay idle.
MAX_IDLE = 256
IDLE_TIMEOUT = 15.0

#: ``(checked address, port, TLS context or None, TLS server name or None)``, plus the
#: protocol factory, ``-> (transport, connection)`` as ``loop.create_connection`` returns them:
#: the only way camo opens upstream sockets; tests pass a spy that records every dial.
Dial = Callable[
    [Callable[[], "Connection"], str, int, ssl.SSLContext | None, str | None],
    Awaitable[tuple[asyncio.BaseTransport, "Connection"]],
]
#: ``(scheme, URL host, port, checked address)``: a connection is reused only for all four.
PoolKey = tuple[str, str, int, str]


async def open_connection(
    factory: Callable[[], Connection],
    address: str,
    port: int,
    context: ssl.SSLContext | None,
    server_hostname: str | None,
) -> tuple[asyncio.BaseTransport, Connection]:
    """Connect to the IP literal ``address``: asyncio does no name lookup for a literal."""
    return await asyncio.get_running_loop().create_connection(
        factory, host=address, port=port, ssl=context, server_hostname=server_hostname
    )


class BadResponse(Exception):
    """Upstream's response is malformed, over the header bounds or cut off before its end of
    headers; the message is the reason camo reports, and the connection is discarded."""


class BodyError(Exception):
    """The body broke off or was malformed after the headers had been accepted."""


class Connection(asyncio.BufferedProtocol):
    """One upstream socket, dialled to one checked address, read straight into llhttp.

    A protocol rather than asyncio's streams: each socket read is parsed in the loop's own
    callback and wakes the waiting request at most once, with no stream buffer to copy
    through (a proxied 20 KB image cost ~60 µs of CPU in the client with streams, ~17 µs in a
    bare protocol; BENCHMARKS.md, camo session 6). Bytes that arrive while no response is
    being read (an idle pooled connection) mean the connection is out of step: it is dropped.
    """

    __slots__ = ("_buffer", "closed", "key", "loop", "paused", "response", "reused", "transport")

    def __init__(self, key: PoolKey, buffer: memoryview) -> None:
        self.key = key
        self._buffer = buffer
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.reused = False
        self.closed = False
        self.paused = False

    # -- asyncio protocol callbacks --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's do not subclass asyncio.Transport)
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        response = self.response
        if response is None:
            self.discard()  # unasked-for bytes on an idle connection
        else:
            response.feed(self._buffer[:nbytes])

    def eof_received(self) -> bool:
        self.closed = True
        if self.response is not None:
            self.response.ended(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response.ended(exc)

    # -- use --

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def discard(self) -> None:
        """Drop the socket at once: whatever it still holds must not reach another request."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Idle keep-alive connections by :data:`PoolKey`, bounded in number and idle time."""

    def __init__(self, max_idle: int = MAX_IDLE, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout
        self._idle: dict[PoolKey, deque[tuple[float, Connection]]] = {}
        self._count = 0
        self._swept = time.monotonic()

    def take(self, key: PoolKey) -> Connection | None:
        """The most recently used live connection for ``key`` (least likely to be stale)."""
        stack = self._idle.get(key)
        if stack is None:
            return None
        now = time.monotonic()
        found = None
        while stack:
            since, conn = stack.pop()
            self._count -= 1
            if now - since < self._idle_timeout and conn.usable():
                conn.reused = True
                found = conn
                break
            conn.discard()
        if not stack:
            del self._idle[key]  # no empty entries left behind: keys are bounded by MAX_IDLE
        return found

    @property
    def idle(self) -> int:
        return self._count

    def put(self, conn: Connection) -> None:
        now = time.monotonic()
        if now - self._swept > self._idle_timeout or self._count >= self._max_idle:
            self._sweep(now)
        if self._count >= self._max_idle:
            conn.discard()
            return
        conn.resume()  # an idle connection is read: its EOF or stray bytes retire it
        self._idle.setdefault(conn.key, deque()).append((now, conn))
        self._count += 1

    def _sweep(self, now: float) -> None:
        """Close connections idle for too long (oldest first in each deque)."""
        self._swept = now
        for key, stack in list(self._idle.items()):
            while stack and (now - stack[0][0] >= self._idle_timeout or not stack[0][1].usable()):
                stack.popleft()[1].discard()
                self._count -= 1
            if not stack:
                del self._idle[key]

    def close(self) -> None:
        for stack in self._idle.values():
            for _, conn in stack:
                conn.close()
        self._idle.clear()
        self._count = 0


def request_parts(url: URL) -> tuple[str, str]:
    """What a request for ``url`` says besides its method and headers: the rest of the
    request line with the Host line, and an Authorization line for ``user:pass@`` (else "");
    ValueError if a part would break the framing."""
    target = f" {url.raw_path_qs} HTTP/1.1\r\nHost: {url.host_port_subcomponent}\r\n"
    if target.count("\r") != 2 or target.count("\n") != 2 or "\0" in target:
        raise ValueError("line break or NUL in a request header")
    if url.raw_user is None and url.raw_password is None:
        return target, ""
    pair = f"{url.user or ''}:{url.password or ''}"  # base64: no byte of it can break a line
    try:
        raw = pair.encode("latin-1")
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return target, "Authorization: Basic " + base64.b64encode(raw).decode("ascii") + "\r\n"


def request_head(
    method: str,
    url: URL,
    headers: Mapping[str, str],
    parts: tuple[str, str] | None = None,
) -> bytes:
    """The request line and headers; ValueError if a value would break the framing.

    ``parts``: :func:`request_parts` of ``url``, if the caller kept them (a URL's parts are
    the same for every request, and yarl builds them in Python).
    """
    target, authorization = request_parts(url) if parts is None else parts
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    count = len(headers)
    if fields.count("\r") != count or fields.count("\n") != count or "\0" in fields:
        raise ValueError("line break or NUL in a request header")
    return (method + target + fields + authorization + "\r\n").encode("latin-1")


class Response:
    """One response read from one connection; also the parser's callback object.

    The connection feeds each socket read to :meth:`feed` as it arrives; the proxy takes the
    body at its own pace (:meth:`read`), and while a chunk waits for it the socket is not
    read. :meth:`release` returns the connection to the pool only when the response ended
    cleanly, exactly at its framed end, with keep-alive. Header names are kept lower-case.
    """

    def __init__(self, conn: Connection, pool: Pool, *, head_only: bool) -> None:
        self._conn: Connection | None = conn
        conn.response = self
        self._pool = pool
        self._head_only = head_only
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None  # BadResponse or OSError, for the reader
        self.status = 0
        self.target: URL | None = None  # what this answers (after redirects); by the Upstream
        self.headers: list[tuple[bytes, bytes]] = []  # names lower-case, in the order received
        self.received = 0  # bytes read from the socket for this response
        self._header_bytes = 0
        self._headers_done = False
        self._interim = False  # inside a 1xx response, which is skipped
        self._complete = False
        self._reusable = not head_only  # a HEAD answer's framing is not checkable by llhttp
        self._length: int | None = None
        self._chunked = False
        self._body: list[bytes] = []
        self._problem: str | None = None
        self._keep_alive = False

    # -- llhttp callbacks (names fixed by httptools) --

    def on_message_begin(self) -> None:
        if self._complete:
            self._reusable = False  # bytes after our response: the connection is out of step

    def on_header(self, name: bytes, value: bytes) -> None:
        # called per header line: kept to the bounds and one append
        if self._complete:
            return
        headers = self.headers
        self._header_bytes += len(name) + len(value)
        if len(headers) >= MAX_HEADERS:
            self._problem = f"more than {MAX_HEADERS} response headers"
            raise BadResponse(self._problem)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._problem = f"response headers over {MAX_HEADER_BYTES} bytes"
            raise BadResponse(self._problem)
        headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # an interim response (100 Continue, 103 Early Hints): wait for the real one
            self._interim = True
            self.headers = []
            return
        self.status = status
        self._headers_done = True
        framing = dict(self.headers)  # the last of each name, as llhttp frames by
        length = framing.get(b"content-length")
        if length is not None:
            self._length = int(length)  # llhttp accepts digits only, and one value only
        coding = framing.get(b"transfer-encoding")
        if coding is not None:
            self._chunked = coding.rstrip().lower().endswith(b"chunked")
        if self._head_only:
            self._complete = True

    def on_body(self, body: bytes) -> None:
        if not (self._complete or self._interim):
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif not self._complete:
            self._complete = True
            # asked now: llhttp resets the flag once the message is done
            self._keep_alive = self._parser.should_keep_alive()

    # -- fed by the connection, in the event loop's callbacks --

    def feed(self, data: memoryview) -> None:
        """One socket read: parsed at once; the reader is woken; reading pauses while a body
        chunk waits for the relay."""
        self.received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # 101 Switching Protocols: what follows is not HTTP; relay nothing of it
            self._reusable = False
            if self._headers_done:
                self._body.clear()
                self._complete = True
            else:
                self._fail(BadResponse("upgrade before a response"))
        except httptools.HttpParserError as exc:
            self._reusable = False
            if not self._complete:  # junk after a whole response only retires the connection
                self._fail(BadResponse(self._problem or f"malformed response ({exc})"))
        if not self._headers_done and self.received > MAX_HEADER_BYTES:
            self._fail(BadResponse(f"response headers over {MAX_HEADER_BYTES} bytes"))
        if self._body and not self._complete and self._conn is not None:
            self._conn.pause()
        self._wake()

    def ended(self, exc: BaseException | None) -> None:
        """The connection hit its end (``exc`` None) or failed."""
        self._reusable = False
        if not self._complete and self._error is None:
            if exc is not None:
                self._error = exc
            elif not self._headers_done:
                self._error = BadResponse("connection closed before a complete response")
            elif self._length is None and not self._chunked:
                self._complete = True  # a close-delimited body ends with the connection
            else:
                self._error = BadResponse("connection closed mid-body")
        self._wake()

    def _fail(self, error: BadResponse) -> None:
        if self._error is None:
            self._error = error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next(self) -> None:
        """Wait for the next socket read (or the connection's end); raises what went wrong."""
        error = self._error
        if error is not None:
            raise error
        conn = self._conn
        assert conn is not None, "response already released"
        conn.resume()
        self._waiter = waiter = conn.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        error = self._error
        if error is not None:
            raise error

    # -- reading --

    @property
    def url(self) -> str:
        """The URL this answers, as text ("" if not set); worked out only when asked (the
        cache asks when it stores), since yarl builds the text in Python."""
        return "" if self.target is None else str(self.target)

    @property
    def content_length(self) -> int | None:
        return self._length

    def header(self, name: bytes) -> bytes | None:
        """The first value of the header ``name`` (lower-case)."""
        for lower, value in self.headers:
            if lower == name:
                return value
        return None

    def headers_named(self, name: bytes) -> list[bytes]:
        """Every value of the header ``name`` (lower-case), in the order received."""
        return [value for lower, value in self.headers if lower == name]

    async def start(self) -> None:
        """Wait until the status line and headers are in; BadResponse or OSError otherwise."""
        while not self._headers_done or self._error is not None:
            await self._next()

    async def read(self) -> bytes:
        """The body bytes of one socket read (b"" at the end); BodyError if it broke off."""
        while (not self._body and not self._complete) or self._error is not None:
            try:
                await self._next()
            except (BadResponse, OSError) as exc:
                raise BodyError(str(exc) or type(exc).__name__) from None
        if not self._body:
            return b""
        chunk = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        return chunk

    async def read_first(self, count: int) -> bytes:
        """Up to ``count`` body bytes (fewer only at the end), for content sniffing."""
        while (sum(map(len, self._body)) < count and not self._complete) or self._error is not None:
            try:
                await self._next()
            except (BadResponse, OSError) as exc:
                raise BodyError(str(exc) or type(exc).__name__) from None
        data = b"".join(self._body)
        self._body = [data[count:]] if len(data) > count else []
        return data[:count]

    def release(self) -> None:
        """Give the connection back for reuse if the exchange ended cleanly, else drop it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.response = None
        if self._complete and self._reusable and self._keep_alive and conn.usable():
            self._pool.put(conn)
        else:
            conn.discard()
