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

import httptools
from yarl import URL

#: Bytes asked of the socket per read; with the stream buffer below, at most ~64 KB are read
#: ahead of what the relay has sent (back-pressure reaches the upstream through TCP).
READ_SIZE = 32 * 1024
#: asyncio's StreamReader pauses the socket once it buffers more than twice this.
STREAM_LIMIT = 16 * 1024
#: Bounds on the header section: past either the response is a bad upstream (502).
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
#: Idle keep-alive connections kept per Upstream, and how long one may stay idle.
MAX_IDLE = 256
IDLE_TIMEOUT = 15.0

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
#: ``(checked address, port, TLS context or None, TLS server name or None) -> streams``: the
#: only way camo opens upstream sockets; tests pass a spy that records every dial.
Dial = Callable[[str, int, ssl.SSLContext | None, str | None], Awaitable[Streams]]
#: ``(scheme, URL host, port, checked address)``: a connection is reused only for all four.
PoolKey = tuple[str, str, int, str]


async def open_streams(
    address: str, port: int, context: ssl.SSLContext | None, server_hostname: str | None
) -> Streams:
    """Connect to the IP literal ``address``: asyncio does no name lookup for a literal."""
    return await asyncio.open_connection(
        host=address, port=port, ssl=context, server_hostname=server_hostname, limit=STREAM_LIMIT
    )


class BadResponse(Exception):
    """Upstream's response is malformed, over the header bounds or cut off before its end of
    headers; the message is the reason camo reports, and the connection is discarded."""


class BodyError(Exception):
    """The body broke off or was malformed after the headers had been accepted."""


class Connection:
    """One upstream socket, dialled to one checked address."""

    __slots__ = ("key", "reader", "reused", "writer")

    def __init__(
        self, key: PoolKey, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.reused = False

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def discard(self) -> None:
        """Drop the socket at once: whatever it still holds must not reach another request."""
        self.writer.transport.abort()


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
                conn.writer.close()
        self._idle.clear()
        self._count = 0


def request_head(method: str, url: URL, headers: Mapping[str, str]) -> bytes:
    """The request line and headers; ValueError if a value would break the framing."""
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1", f"Host: {url.host_port_subcomponent}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if url.raw_user is not None or url.raw_password is not None:
        pair = f"{url.user or ''}:{url.password or ''}"
        try:
            raw = pair.encode("latin-1")
        except UnicodeEncodeError:
            raw = pair.encode("utf-8")
        lines.append("Authorization: Basic " + base64.b64encode(raw).decode("ascii"))
    flat = "".join(lines)
    if "\r" in flat or "\n" in flat or "\0" in flat:
        raise ValueError("line break or NUL in a request header")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Response:
    """One response read from one connection; also the parser's callback object.

    The proxy reads the body at its own pace (:meth:`read`), so the socket is read only when
    the previous chunk has been relayed. :meth:`release` returns the connection to the pool
    only when the response ended cleanly, exactly at its framed end, with keep-alive.
    """

    def __init__(self, conn: Connection, pool: Pool, *, head_only: bool) -> None:
        self._conn: Connection | None = conn
        self._pool = pool
        self._head_only = head_only
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.url = ""  # the URL this answers (after redirects), set by the Upstream
        self.raw_headers: list[tuple[bytes, bytes]] = []
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
        if self._complete:
            return
        self._header_bytes += len(name) + len(value)
        if len(self.raw_headers) >= MAX_HEADERS:
            self._problem = f"more than {MAX_HEADERS} response headers"
        elif self._header_bytes > MAX_HEADER_BYTES:
            self._problem = f"response headers over {MAX_HEADER_BYTES} bytes"
        if self._problem is not None:
            raise BadResponse(self._problem)
        self.raw_headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            self._length = int(value)  # llhttp accepts digits only, and one value only
        elif lower == b"transfer-encoding":
            self._chunked = value.rstrip().lower().endswith(b"chunked")

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # an interim response (100 Continue, 103 Early Hints): wait for the real one
            self._interim = True
            self.raw_headers = []
            self._length = None
            self._chunked = False
            return
        self.status = status
        self._headers_done = True
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

    # -- reading --

    @property
    def content_length(self) -> int | None:
        return self._length

    def header(self, name: bytes) -> bytes | None:
        """The first value of the header ``name`` (lower-case)."""
        for raw_name, value in self.raw_headers:
            if raw_name.lower() == name:
                return value
        return None

    def headers_named(self, name: bytes) -> list[bytes]:
        """Every value of the header ``name`` (lower-case), in the order received."""
        return [value for raw_name, value in self.raw_headers if raw_name.lower() == name]

    async def start(self) -> None:
        """Read until the status line and headers are in; BadResponse or OSError otherwise."""
        while not self._headers_done:
            await self._feed()

    async def read(self) -> bytes:
        """The body bytes of one socket read (b"" at the end); BodyError if it broke off."""
        while not self._body and not self._complete:
            try:
                await self._feed()
            except (BadResponse, OSError) as exc:
                raise BodyError(str(exc) or type(exc).__name__) from None
        if not self._body:
            return b""
        chunk = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        return chunk

    async def read_first(self, count: int) -> bytes:
        """Up to ``count`` body bytes (fewer only at the end), for content sniffing."""
        while sum(map(len, self._body)) < count and not self._complete:
            try:
                await self._feed()
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
        if self._complete and self._reusable and self._keep_alive and conn.usable():
            self._pool.put(conn)
        else:
            conn.discard()

    async def _feed(self) -> None:
        assert self._conn is not None, "response already released"
        data = await self._conn.reader.read(READ_SIZE)
        if not data:
            self._end_of_stream()
            return
        self.received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # 101 Switching Protocols: what follows is not HTTP; relay nothing of it
            self._reusable = False
            if not self._headers_done:
                raise BadResponse("upgrade before a response") from None
            self._body.clear()
            self._complete = True
        except httptools.HttpParserError as exc:
            self._reusable = False
            if self._complete:
                return  # junk after our response: ours is whole, the connection is not reused
            raise BadResponse(self._problem or f"malformed response ({exc})") from None
        if not self._headers_done and self.received > MAX_HEADER_BYTES:
            raise BadResponse(f"response headers over {MAX_HEADER_BYTES} bytes")

    def _end_of_stream(self) -> None:
        self._reusable = False
        if self._complete:
            return
        if not self._headers_done:
            raise BadResponse("connection closed before a complete response")
        if self._length is None and not self._chunked:
            self._complete = True  # a close-delimited body ends with the connection
            return
        raise BadResponse("connection closed mid-body")
