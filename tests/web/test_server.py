"""The shared server runner: a real granian server on loopback, lifespan hooks honoured."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import httpx
import pytest

from pythonhosted.web.lifespan import handle_lifespan
from pythonhosted.web.responses import send_text
from pythonhosted.web.server import Bind, free_port, running
from pythonhosted.web.types import Receive, Scope, Send
from support.processes import wait_until


def test_bind_parse() -> None:
    assert Bind.parse("127.0.0.1:8000") == Bind("127.0.0.1", 8000)
    assert Bind.parse("[::1]:80").url() == "http://[::1]:80"
    with pytest.raises(ValueError, match="bind address must be HOST:PORT, got 'localhost'"):
        Bind.parse("localhost")
    with pytest.raises(ValueError, match="HOST:PORT"):
        Bind.parse("h:99999")
    for hostile in ("[::1:80", "::1]:80", "::1:80", "[127.0.0.1]:80", "h:²", "h:" + "9" * 5000):
        with pytest.raises(ValueError, match="bind address must be HOST:PORT"):
            Bind.parse(hostile)


def test_a_free_port_is_never_one_an_outgoing_connection_could_take() -> None:
    """Below the ephemeral range (outgoing connections' local ports), and bindable."""
    ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(50)}
    assert all(10_000 <= port < ephemeral for port in ports)
    assert len(ports) > 40  # chosen at random, so parallel test workers rarely meet
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_running_serves_and_runs_lifespan() -> None:
    events: list[str] = []

    async def startup() -> None:
        events.append("startup")

    async def shutdown() -> None:
        events.append("shutdown")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send, startup, shutdown)
            return
        await send_text(send, 418, f"{scope['method']} {scope['path']}")

    with running(app) as url:
        response = httpx.get(url + "/teapot")
        assert (response.status_code, response.text) == (418, "GET /teapot\n")
        assert response.headers["content-type"] == "text/plain; charset=UTF-8"
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def test_a_server_that_ends_early_says_why_when_the_test_ends() -> None:
    """A server whose loop a defect ended: its test's end raised "Event loop is closed" from
    asking the loop to stop, which hid why it ended (a flake at load 10 left only that)."""

    async def nothing() -> None:
        pass

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send, nothing, nothing)
            return
        asyncio.get_running_loop().stop()  # the defect
        await send_text(send, 200, "answered before the loop stopped")

    stopped = "^Event loop stopped before Future completed"
    with pytest.raises(RuntimeError, match=stopped), running(app) as url:
        assert httpx.get(url + "/x").status_code == 200
        server = f"asgi-{url.rsplit(':', 1)[1]}"
        wait_until(lambda: server not in {thread.name for thread in threading.enumerate()})
