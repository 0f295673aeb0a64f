"""camo's own upstream client against hostile raw-socket upstreams (framing, bounds, reuse).

A raw TCP server on 127.0.0.2 answers each request path with fixed bytes, so responses no
well-behaved HTTP server would send can be aimed at camo. Whatever upstream sends, camo must
answer with a refusal (502 and a reason) or drop the client connection, never relay a guess.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from yarl import URL

from pythonhosted.camo.errors import Refused
from pythonhosted.camo.http1 import (
    MAX_HEADER_BYTES,
    READ_SIZE,
    Connection,
    Pool,
    open_connection,
    request_head,
)
from pythonhosted.camo.policy import AddressPolicy
from pythonhosted.camo.rules import Rules
from pythonhosted.camo.upstream import Upstream, UrlChecks

if TYPE_CHECKING:
    from conftest import Camo
    from conftest import Upstream as HttpUpstream

PNG = b"\x89PNG\r\n\x1a\n" + bytes(2000)
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
FLOOD_BYTES = 256 * 1024 * 1024


def ok(body: bytes = PNG, extra: bytes = b"") -> bytes:
    return OK_HEAD + b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


#: path -> (bytes sent in reply, then close the connection?)
REPLIES: dict[str, tuple[bytes, bool]] = {
    "/ok": (ok(), False),
    "/cl-and-te": (
        OK_HEAD + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        False,
    ),
    "/duplicate-length": (OK_HEAD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", False),
    "/bad-length": (OK_HEAD + b"Content-Length: 3x\r\n\r\nabc", False),
    "/bare-lf": (b"HTTP/1.1 200 OK\nContent-Type: image/png\nContent-Length: 3\n\nabc", False),
    "/folded": (OK_HEAD + b"X-A: a\r\n b\r\nContent-Length: 3\r\n\r\nabc", False),
    "/nul": (OK_HEAD + b"X-A: a\0b\r\nContent-Length: 3\r\n\r\nabc", False),
    "/bad-status": (b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", False),
    "/not-http": (PNG, True),
    "/many-headers": (
        OK_HEAD + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"Content-Length: 0\r\n\r\n",
        False,
    ),
    "/huge-header": (
        OK_HEAD + b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\nContent-Length: 0\r\n\r\n",
        False,
    ),
    "/endless-header": (OK_HEAD + b"X-Big: " + b"a" * (2 * MAX_HEADER_BYTES), False),
    "/closed": (b"", True),
    "/half-head": (b"HTTP/1.1 200 OK\r\nContent-Type: ima", True),
    "/bad-chunk": (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", False),
    "/bad-second-chunk": (
        OK_HEAD
        + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(PNG)
        + PNG
        + b"\r\n"
        + b"zz\r\n",
        False,
    ),
    "/short-body": (OK_HEAD + b"Content-Length: 100000\r\n\r\n" + PNG, True),
    "/close-delimited": (OK_HEAD + b"Connection: close\r\n\r\n" + PNG, True),
    "/early-hints": (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + ok(), False),
    "/trailing-junk": (ok() + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!", False),
    "/then-close": (ok(), True),  # keep-alive framing, but the server hangs up afterwards
    "/hang-up-next": (ok(), False),  # and closes when the next request arrives, unanswered
    "/upgrade": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nnot http", False),
}


class RawUpstream:
    """Counts connections; answers each request head from REPLIES."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.flood_sent = 0
        handler = self._handler()
        self.server = socketserver.ThreadingTCPServer(("127.0.0.2", 0), handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.2:{self.port}"

    def flood(self, sock: socket.socket) -> None:
        """A body far larger than any buffer, counting what the socket accepted."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.flood_sent = 0
        sock.sendall(OK_HEAD + b"Content-Length: %d\r\n\r\n" % FLOOD_BYTES)
        chunk = bytes(16 * 1024)
        try:
            while self.flood_sent < FLOOD_BYTES:
                sock.sendall(chunk)
                self.flood_sent += len(chunk)
        except OSError:
            return

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        upstream = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream.connections += 1
                sock: socket.socket = self.request
                buffer = b""
                hang_up_next = False
                while True:
                    while b"\r\n\r\n" not in buffer:
                        try:
                            data = sock.recv(65536)
                        except OSError:
                            return
                        if not data:
                            return
                        buffer += data
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    if hang_up_next:  # a keep-alive timeout racing the next request
                        sock.close()
                        return
                    upstream.requests.append(head)
                    path = head.split(b" ", 2)[1].decode()
                    if path == "/flood":
                        upstream.flood(sock)
                        return
                    reply, close = REPLIES[path]
                    hang_up_next = path == "/hang-up-next"
                    try:
                        sock.sendall(reply)
                    except OSError:
                        return
                    if close:
                        sock.shutdown(socket.SHUT_RDWR)
                        return

        return Handler


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    upstream = RawUpstream()
    yield upstream
    upstream.server.shutdown()
    upstream.server.server_close()


def bad_upstream(response: httpx.Response, reason_part: str) -> bool:
    error = response.headers.get("x-camo-error", "")
    return (
        response.status_code == 502
        and error.startswith("upstream error: ")
        and (reason_part in error)
    )


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/cl-and-te", "Transfer-Encoding can't be present with Content-Length"),
        ("/duplicate-length", "Duplicate Content-Length"),
        ("/bad-length", "Content-Length"),
        ("/bare-lf", "malformed response"),
        ("/folded", "malformed response"),
        ("/nul", "Invalid header value char"),
        ("/bad-status", "malformed response"),
        ("/not-http", "malformed response"),
        ("/many-headers", "more than 100 response headers"),
        ("/huge-header", f"response headers over {MAX_HEADER_BYTES} bytes"),
        ("/endless-header", f"response headers over {MAX_HEADER_BYTES} bytes"),
        ("/closed", "connection closed before a complete response"),
        ("/half-head", "connection closed before a complete response"),
    ],
)
def test_malformed_response_is_502(camo: Camo, raw: RawUpstream, path: str, reason: str) -> None:
    """Refused from what arrived, not by the deadline (that would be a 504, "upstream took
    too long": a wall-clock bound here failed nothing more, but a starved test process)."""
    response = camo.get(raw.base + path)
    assert bad_upstream(response, reason), (response.status_code, response.headers)
    assert PNG[8:] not in response.content


def test_malformed_first_chunk_is_502(camo: Camo, raw: RawUpstream) -> None:
    """Depending on how the bytes arrive, the bad chunk is met with the headers or after."""
    response = camo.get(raw.base + "/bad-chunk")
    assert response.status_code == 502
    assert "Invalid character in chunk size" in response.headers["x-camo-error"]


@pytest.mark.parametrize("path", ["/bad-second-chunk", "/short-body"])
def test_body_breaking_off_is_never_a_clean_200(camo: Camo, raw: RawUpstream, path: str) -> None:
    try:
        response = camo.get(raw.base + path)
    except httpx.RemoteProtocolError:
        return  # cut off after the first part had gone out
    # or, when the whole reply arrived in one read, refused before anything was relayed
    assert response.status_code == 502
    assert response.headers["x-camo-error"].startswith(
        ("upstream body broke off", "upstream error: ")
    )


def test_close_delimited_body(camo: Camo, raw: RawUpstream) -> None:
    response = camo.get(raw.base + "/close-delimited")
    assert (response.status_code, response.content) == (200, PNG)


def test_interim_response_skipped(camo: Camo, raw: RawUpstream) -> None:
    response = camo.get(raw.base + "/early-hints")
    assert (response.status_code, response.content) == (200, PNG)
    assert "link" not in response.headers


def test_upgrade_is_not_relayed(camo: Camo, raw: RawUpstream) -> None:
    response = camo.get(raw.base + "/upgrade")
    assert (response.status_code, response.headers["x-camo-error"]) == (
        404,
        "upstream answered 101",
    )
    assert b"not http" not in response.content


def test_keep_alive_reuses_one_connection(camo: Camo, raw: RawUpstream) -> None:
    before = raw.connections
    for _ in range(5):
        assert camo.get(raw.base + "/ok").content == PNG
    assert raw.connections - before <= 1


def test_bytes_after_a_response_retire_the_connection(camo: Camo, raw: RawUpstream) -> None:
    """An unsolicited second response must never be read as the answer to the next request."""
    assert camo.get(raw.base + "/trailing-junk").content == PNG
    before = raw.connections
    response = camo.get(raw.base + "/ok")
    assert (response.status_code, response.content) == (200, PNG)
    assert raw.connections == before + 1


def test_stale_pooled_connection_is_retried(camo: Camo, raw: RawUpstream) -> None:
    assert camo.get(raw.base + "/then-close").content == PNG
    time.sleep(0.05)
    response = camo.get(raw.base + "/ok")
    assert (response.status_code, response.content) == (200, PNG)


def test_request_retried_once_when_a_pooled_connection_was_closed(
    camo: Camo, raw: RawUpstream
) -> None:
    assert camo.get(raw.base + "/hang-up-next").content == PNG
    before = raw.connections
    response = camo.get(raw.base + "/ok")
    assert (response.status_code, response.content) == (200, PNG)
    assert raw.connections == before + 1


def test_upstream_read_waits_for_the_relay(raw: RawUpstream) -> None:
    """Back-pressure: while the body is not being consumed, the socket is not read, so the
    upstream can only fill the (small) kernel buffers, not camo's memory."""

    async def dial(
        factory: Callable[[], Connection],
        address: str,
        port: int,
        context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> tuple[asyncio.BaseTransport, Connection]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect((address, port))
        sock.setblocking(False)
        return await asyncio.get_running_loop().create_connection(factory, sock=sock)

    async def scenario() -> tuple[int, int]:
        checks = UrlChecks(AddressPolicy.allowing(["127.0.0.2/32"]), Rules(), False)
        client = Upstream(checks, max_redirects=0, connect_timeout=5, dial=dial)
        response = await client.open("GET", raw.base + "/flood", {})
        first = len(await response.read())
        await asyncio.sleep(0.5)
        sent = raw.flood_sent
        response.release()
        await client.close()
        return first, sent

    first, sent = asyncio.run(scenario())
    assert 0 < first <= READ_SIZE
    assert sent < 4 * 1024 * 1024  # a few kernel buffers, nowhere near the 256 MiB body


def test_request_is_minimal(camo: Camo, raw: RawUpstream) -> None:
    raw.requests.clear()
    camo.get(raw.base + "/ok", headers={"Cookie": "a=b"})
    lines = raw.requests[0].split(b"\r\n")
    assert lines[0] == b"GET /ok HTTP/1.1"
    assert lines[1] == b"Host: 127.0.0.2:%d" % raw.port
    names = {line.split(b":", 1)[0].lower() for line in lines[1:]}
    assert names == {b"host", b"accept", b"user-agent", b"via"}


def test_request_head_refuses_line_breaks() -> None:
    url = URL("http://example.test/a.png")
    with pytest.raises(ValueError, match="line break"):
        request_head("GET", url, {"User-Agent": "x\r\nX-Injected: 1"})
    assert request_head("GET", URL("http://u:p@example.test:8080/a b?q=1"), {}) == (
        b"GET /a%20b?q=1 HTTP/1.1\r\nHost: example.test:8080\r\nAuthorization: Basic dTpw\r\n\r\n"
    )


def assert_closing(conn: Connection) -> None:
    assert conn.transport is not None and conn.transport.is_closing()


def test_pool_is_keyed_by_checked_address_and_bounded() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.2", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Pool(max_idle=2, idle_timeout=0.2)
        conns = []
        buffer = memoryview(bytearray(READ_SIZE))
        key = ("http", "a.test", port, "127.0.0.2")
        for _ in range(3):
            _, conn = await asyncio.get_running_loop().create_connection(
                functools.partial(Connection, key, buffer), "127.0.0.2", port
            )
            conns.append(conn)
        for conn in conns:
            pool.put(conn)
        assert_closing(conns[2])  # over the bound: not kept
        assert pool.take(("http", "a.test", port, "127.0.0.3")) is None  # other address
        assert pool.take(("http", "b.test", port, "127.0.0.2")) is None  # other host
        assert pool.take(("http", "a.test", port, "127.0.0.2")) is conns[1]
        await asyncio.sleep(0.3)
        assert pool.take(("http", "a.test", port, "127.0.0.2")) is None  # idle too long
        assert_closing(conns[0])
        server.close()

    asyncio.run(scenario())


class RecordingDial:
    """A dial seam that records its arguments, then hangs or connects."""

    def __init__(self, *, hang: bool) -> None:
        self.hang = hang
        self.calls: list[tuple[str, int, bool, str | None]] = []

    async def __call__(
        self,
        factory: Callable[[], Connection],
        address: str,
        port: int,
        context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> tuple[asyncio.BaseTransport, Connection]:
        self.calls.append((address, port, isinstance(context, ssl.SSLContext), server_hostname))
        if self.hang:
            await asyncio.sleep(3600)
        return await open_connection(factory, address, port, context, server_hostname)


def fetch_with(dial: RecordingDial, url: str, connect_timeout: float = 5) -> object:
    async def lookup(host: str, port: int) -> list[str]:
        return ["10.0.0.1", "127.0.0.2"]  # only the second is allowed

    async def scenario() -> object:
        checks = UrlChecks(AddressPolicy.allowing(["127.0.0.2/32"]), Rules(), False)
        client = Upstream(
            checks, max_redirects=0, connect_timeout=connect_timeout, lookup=lookup, dial=dial
        )
        try:
            response = await client.open("GET", url, {})
            response.release()
            return response.status
        except Refused as refusal:
            return (refusal.status, refusal.detail)
        finally:
            await client.close()

    return asyncio.run(scenario())


def test_https_verifies_the_url_host_on_the_checked_address(upstream: HttpUpstream) -> None:
    dial = RecordingDial(hang=False)
    # the upstream speaks plain HTTP, so the TLS handshake fails: a connect failure, never a
    # fallback to plain HTTP
    result = fetch_with(dial, f"https://images.test:{upstream.port}/png")
    assert result == (502, "cannot connect to images.test")
    assert dial.calls == [("127.0.0.2", upstream.port, True, "images.test")]


def test_connect_timeout(raw: RawUpstream) -> None:
    dial = RecordingDial(hang=True)
    started = time.monotonic()
    assert fetch_with(dial, f"http://images.test:{raw.port}/ok", connect_timeout=0.2) == (
        502,
        "cannot connect to images.test",
    )
    assert time.monotonic() - started < 5  # the 0.2 s asked for, not fetch_with's default 5 s
    assert dial.calls == [("127.0.0.2", raw.port, False, None)]
