"""A real upstream image server on 127.0.0.2 and camo servers on 127.0.0.1, all on loopback.

Camo only ever gets ``127.0.0.2/32`` allowed (or less), so the SSRF tests can aim it at
127.0.0.1 and know a refusal comes from the policy. Names resolve through a stub resolver
(camo's ``lookup`` seam), never through DNS.

Test modules cannot import this file (``--import-mode=importlib``), so everything they need
comes through fixtures; they import the classes below only for type checking.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from pythonhosted.camo import create_app, sign_url
from pythonhosted.camo.dns import Lookup
from pythonhosted.camo.http1 import Connection, open_connection
from pythonhosted.config import CamoSettings
from pythonhosted.web.server import running
from pythonhosted.web.types import Headers, Receive, Scope, Send

KEY = b"test-key"
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(20 * 1024)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
UPSTREAM_HOST = "127.0.0.2"

#: the stub resolver's zone: test names -> addresses (never real DNS)
STUB_DNS: dict[str, list[str]] = {
    "images.test": ["127.0.0.2"],
    "metadata.test": ["169.254.169.254"],
    "private.test": ["10.0.0.1", "192.168.1.1", "fd00::1"],
    "mixed.test": ["10.1.2.3", "127.0.0.2"],
    "self.test": ["127.0.0.1"],
}


async def stub_lookup(host: str, port: int) -> Sequence[str]:
    """A stub resolver: the names in STUB_DNS; anything else goes to the system resolver
    with ``AI_NUMERICHOST``, so it fails exactly as a real lookup's argument handling fails
    (``UnicodeError`` for an empty label, ``gaierror`` for a name) without any DNS query."""
    if host in STUB_DNS:
        return STUB_DNS[host]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
    )
    return [str(info[4][0]) for info in infos]


async def loopback_dial(
    factory: Callable[[], Connection],
    address: str,
    port: int,
    context: ssl.SSLContext | None,
    server_hostname: str | None,
) -> tuple[asyncio.BaseTransport, Connection]:
    """camo's dialler, confined to loopback: a public address a test URL happens to spell
    fails like an unreachable host instead of reaching the internet."""
    if not ipaddress.ip_address(address).is_loopback:
        raise OSError(f"test dialler: {address} is off loopback")
    return await open_connection(factory, address, port, context, server_hostname)


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Upstream:
    base: str  # http://127.0.0.2:PORT
    hits: list[Hit] = field(default_factory=list)
    png: bytes = PNG
    svg: bytes = SVG

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


async def _start(send: Send, status: int, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _wait_for_disconnect(receive: Receive, limit: float = 10.0) -> None:
    """Hold the response open until the client (camo) hangs up, or ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while (await receive())["type"] != "http.disconnect":
            pass


def upstream_app(state: Upstream) -> Callable[[Scope, Receive, Send], Any]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        state.hits.append(Hit(scope["method"], path, headers))
        query = parse_qs(scope["query_string"].decode())
        body: bytes = b""
        if path == "/png":
            await _start(
                send, 200, [(b"content-type", b"image/png"), (b"content-length", b"%d" % len(PNG))]
            )
            body = PNG
        elif path == "/svg":
            await _start(send, 200, [(b"content-type", b"image/svg+xml")])
            body = SVG
        elif path == "/html":
            await _start(send, 200, [(b"content-type", b"text/html")])
            body = b"<html>secret page</html>"
        elif path == "/octet-png":
            await _start(send, 200, [(b"content-type", b"application/octet-stream")])
            body = PNG
        elif path == "/untyped-png":
            await _start(send, 200, [])
            body = PNG
        elif path == "/octet-svg":
            await _start(send, 200, [(b"content-type", b"application/octet-stream")])
            body = SVG
        elif path == "/video":
            await _start(send, 200, [(b"content-type", b"video/mp4")])
            body = b"\x00\x00\x00\x18ftypmp42"
        elif path == "/huge-declared":
            # Declares 1 MiB, sends 1 KiB, then waits: only a proxy that reads the body
            # before checking Content-Length would be kept waiting here.
            await _start(
                send, 200, [(b"content-type", b"image/png"), (b"content-length", b"1048576")]
            )
            await send({"type": "http.response.body", "body": PNG[:1024], "more_body": True})
            await _wait_for_disconnect(receive)
            return
        elif path == "/chunked":
            await _start(send, 200, [(b"content-type", b"image/png")])
            count, size = int(query["chunks"][0]), int(query["size"][0])
            for _ in range(count):
                await send({"type": "http.response.body", "body": b"\0" * size, "more_body": True})
        elif path == "/slow":
            await _wait_for_disconnect(receive)
            return
        elif path == "/etag":
            if headers.get("if-none-match") == '"v1"':
                await _start(send, 304, [(b"etag", b'"v1"'), (b"cache-control", b"max-age=60")])
            else:
                await _start(send, 200, [(b"content-type", b"image/png"), (b"etag", b'"v1"')])
                body = PNG
        elif path == "/echo":
            await _start(send, 200, [(b"content-type", b"image/x-json")])
            body = json.dumps(headers).encode()
        elif path == "/noisy-headers":
            await _start(
                send,
                200,
                [
                    (b"content-type", b"image/png"),
                    (b"set-cookie", b"session=upstream"),
                    (b"etag", b'"abc"'),
                    (b"cache-control", b"public, max-age=300"),
                    (b"access-control-allow-origin", b"https://evil.example"),
                    (b"content-security-policy", b"script-src *"),
                    (b"x-upstream-private", b"1"),
                    (b"last-modified", b"Wed, 21 Oct 2015 07:28:00 GMT"),
                ],
            )
            body = PNG
        elif path == "/redirect":
            hops = int(query.get("hops", ["1"])[0])
            location = (
                query["to"][0] if hops <= 1 else f"/redirect?hops={hops - 1}&to={query['to'][0]}"
            )
            await _start(send, 302, [(b"location", location.encode())])
        elif path.startswith("/status/"):
            await _start(send, int(path.rsplit("/", 1)[1]), [(b"content-type", b"image/png")])
            body = b"upstream error page"
        else:
            await _start(send, 404, [])
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[Upstream]:
    state = Upstream("")
    with running(upstream_app(state), host=UPSTREAM_HOST) as base:
        state.base = base
        yield state


@pytest.fixture
def upstream(upstream_server: Upstream) -> Upstream:
    upstream_server.hits.clear()
    return upstream_server


class RawUpstream:
    """A TCP server on 127.0.0.2 answering each request with bytes no HTTP server library
    would send (duplicate or malformed headers, raw non-ASCII Location values): one response
    per connection, then it hangs up. ``replies`` maps request paths to the bytes sent."""

    def __init__(self) -> None:
        self.replies: dict[str, bytes] = {}
        self.requests: list[bytes] = []
        upstream = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                head = b""
                while b"\r\n\r\n" not in head:
                    data = sock.recv(65536)
                    if not data:
                        return
                    head += data
                upstream.requests.append(head)
                path = head.split(b" ", 2)[1].decode("latin-1")
                reply = upstream.replies.get(path, b"HTTP/1.1 404 Not Found\r\n\r\n")
                sock.sendall(reply)
                with contextlib.suppress(OSError):  # camo may have hung up first (a refusal)
                    sock.shutdown(socket.SHUT_RDWR)

        self.server = socketserver.ThreadingTCPServer((UPSTREAM_HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.base = f"http://{UPSTREAM_HOST}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def raw_upstream() -> Iterator[RawUpstream]:
    server = RawUpstream()
    yield server
    server.close()


@dataclass
class Camo:
    base: str
    client: httpx.Client
    key: bytes = KEY

    def url(self, target: str, encoding: str = "hex") -> str:
        return sign_url(target, KEY, base=self.base, encoding=encoding)  # type: ignore[arg-type]

    def get(self, target: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(self.url(target), **kwargs)


@contextmanager
def camo_server(*, lookup: Lookup = stub_lookup, **settings: Any) -> Iterator[Camo]:
    """A camo app on 127.0.0.1 with the test key; ``settings`` override CamoSettings fields.

    Its deadline is 30 s unless a test sets one: the default 4 s answered 504 to a burst of
    100 requests sharing one lookup's failure at load 35, where the test is about the
    sharing (the tests of the deadline set theirs, in ms)."""
    values: dict[str, Any] = {
        "key": KEY.decode(),
        "allow_networks": [f"{UPSTREAM_HOST}/32"],
        "timeout": 30.0,
    }
    values.update(settings)
    app = create_app(CamoSettings(**values), lookup=lookup, dial=loopback_dial)
    with running(app) as base, httpx.Client(base_url=base) as client:
        yield Camo(base, client)


@pytest.fixture(scope="module")
def camo() -> Iterator[Camo]:
    with camo_server() as server:
        yield server


CamoFactory = Callable[..., AbstractContextManager[Camo]]


@pytest.fixture(scope="session")
def make_camo() -> CamoFactory:
    return camo_server


@pytest.fixture
def lookup() -> Callable[[str, int], Any]:
    return stub_lookup
