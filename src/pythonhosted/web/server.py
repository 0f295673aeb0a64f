"""Run ASGI apps on granian, alone or several in one process.

granian's embedded server runs an app object inside our own event loop, which is what the
all-in-one ``serve`` needs (several apps, one shutdown path) and what tests
need (a real HTTP server on loopback, started and stopped in-process).

Every server loop is uvloop's: for small responses granian's ASGI bridge, which wakes the loop
from its Rust threads once per request, costs more than the app, and uvloop makes those
wake-ups and the loop's turns a little cheaper (files edge, 10 KB file, 6 alternating runs:
median 51 against 53 us of CPU per request, 28.5k against 27.9k requests/s; BENCHMARKS.md).
Tests run the same loop as production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvloop
from granian.constants import Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server import MPServer
from granian.server.embed import Server

from pythonhosted.web.metrics import SHARED_DIR_ENV
from pythonhosted.web.types import ASGIApp


@dataclass(frozen=True)
class Bind:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Bind:
        """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> Bind; ValueError with a clear reason."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bind address must be HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


# hyper's default write buffer is ~400 KB per connection; 64 KB keeps hundreds of slow
# downloads cheap without costing throughput (the kernel buffers the rest).
_HTTP1 = HTTP1Settings(max_buffer_size=64 * 1024)


# What every granian server of ours shares, embedded or multi-process.
_OPTIONS: dict[str, Any] = {
    "interface": Interfaces.ASGI,
    "websockets": False,
    "log_enabled": False,
    "backlog": 1024,
    "http1_settings": _HTTP1,
}


def _server(app: ASGIApp, bind: Bind) -> Server:
    return Server(app, address=bind.host, port=bind.port, **_OPTIONS)


def run_workers(factory: str, bind: Bind, workers: int) -> None:
    """Serve ``factory`` (``module:function`` returning an ASGI app) in ``workers`` processes.

    One Python process saturates one core; this is how a service uses the rest. Each worker
    builds its own app from the environment (settings travel as ``PYTHONHOSTED_*`` variables),
    so each has its own caches and download-log spool; their metrics meet in a directory that
    lives as long as this call (:mod:`pythonhosted.web.metrics`), so a scrape sees totals.
    """
    with tempfile.TemporaryDirectory(prefix="pythonhosted-metrics-") as shared:
        os.environ[SHARED_DIR_ENV] = shared
        try:
            MPServer(
                factory,
                address=bind.host,
                port=bind.port,
                workers=workers,
                factory=True,
                loop=Loops.uvloop,
                **_OPTIONS,
            ).serve()
        finally:
            del os.environ[SHARED_DIR_ENV]


async def serve_until(apps: Sequence[tuple[ASGIApp, Bind]], stop: asyncio.Event) -> None:
    """Serve every app until ``stop`` is set, then drain (each app's lifespan shutdown runs)."""
    servers = [_server(app, bind) for app, bind in apps]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    for server in servers:
        server.signal_handler_interrupt()  # type: ignore[no-untyped-call]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


def run(apps: Sequence[tuple[ASGIApp, Bind]]) -> None:
    """Blocking entry point for the CLI: SIGINT/SIGTERM stop gracefully (buffers flushed)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_until(apps, stop)

    uvloop.run(main())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(bind: Bind, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((bind.host, bind.port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {bind.url()} after {timeout}s") from None
            time.sleep(0.02)


@contextlib.contextmanager
def running(app: ASGIApp, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a background thread; yield its base URL.

    Used by tests and benchmarks: real sockets, real HTTP, the same server as production.
    """
    bind = Bind(host, free_port(host))
    loop = uvloop.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve_until([(app, bind)], stop))
        except BaseException as exc:
            failure.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=target, name=f"asgi-{bind.port}", daemon=True)
    thread.start()
    try:
        wait_for_port(bind)
        yield bind.url()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
    if failure:
        raise failure[0]
