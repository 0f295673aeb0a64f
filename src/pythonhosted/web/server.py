"""Run ASGI apps, alone or several in one process: on granian, or on our own server
(:mod:`.h1`) for an app that answers its hottest requests inside the connection and for every
app of ``serve`` (``ours``: a full server of ours makes room for a waiting client).

Both run an app object inside our own event loop, which is what the all-in-one ``serve``
needs (several apps, one shutdown path) and what tests need (a real HTTP server on
loopback, started and stopped in-process); both are stopped and drained the same way.

Every server loop is uvloop's: for small responses granian's ASGI bridge, which wakes the loop
from its Rust threads once per request, costs more than the app, and uvloop makes those
wake-ups and the loop's turns a little cheaper (files edge, 10 KB file, 6 alternating runs:
median 51 against 53 us of CPU per request, 28.5k against 27.9k requests/s; BENCHMARKS.md).
Tests run the same loop as production.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import uvloop
from granian._granian import SocketHolder
from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server import MPServer
from granian.server.embed import Server

from pythonhosted.web.drain import (
    STOP_SIGNALS,
    WORKER_APP_ENV,
    WORKER_DRAIN_ENV,
    Draining,
    cut_after,
    stop_began,
    stops_held,
)
from pythonhosted.web.h1.server import H1Server
from pythonhosted.web.h1.workers import serve_processes
from pythonhosted.web.listener import (
    Bind,
    ListenError,
    ServerLimits,
    claim,
    claim_all,
    descriptor_shares,
    raise_open_file_limit,
    report_lowered,
    usable_descriptors,
)
from pythonhosted.web.metrics import SHARED_DIR_ENV
from pythonhosted.web.ports import free_port, wait_for_port
from pythonhosted.web.types import ASGIApp

__all__ = [
    "Bind",
    "EarlyStop",
    "ListenError",
    "ServerLimits",
    "free_port",
    "run",
    "run_workers",
    "running",
    "serve_until",
    "wait_for_port",
]


# hyper's default write buffer is ~400 KB per connection. What a slow download holds is this
# buffer plus the pieces queued behind it, so it is hyper's minimum, 8 KB: large pieces are
# written straight from their own memory whatever the buffer, and the kernel buffers the rest
# (1,000 slow downloads: 52 KB per connection with 8 KB, 88 KB with 16 KB; BENCHMARKS.md).
WRITE_BUFFER = 8 * 1024
# A single process also stops gracefully on SIGHUP (the terminal that ran it closed), whose
# default action killed it with its buffers unflushed; granian's multi-process server keeps
# SIGHUP for restarting its workers.
SINGLE_PROCESS_STOP_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP)
# Seconds past http.drain_timeout after which a worker process that has not exited is killed:
# time for its stop hooks (shipping the download log) after the drain.
KILL_MARGIN = 60


def _options(limits: ServerLimits) -> dict[str, Any]:
    """What every granian server of ours shares, embedded or multi-process.

    HTTP/1 only: in granian's "auto" mode the protocol sniffing that precedes HTTP/1 has no
    deadline, so a client that connects and sends nothing holds a connection slot forever
    (about 1,030 of them stopped a server). In HTTP/1 mode the head deadline runs from accept.
    """
    return {
        "interface": Interfaces.ASGI,
        "http": HTTPModes.http1,
        "websockets": False,
        "log_enabled": False,
        "backlog": limits.backlog,
        "backpressure": limits.max_connections,
        "http1_settings": HTTP1Settings(
            header_read_timeout=max(1, int(limits.header_timeout * 1000)),
            max_buffer_size=WRITE_BUFFER,
        ),
    }


class _ClaimedSocket:
    """Serve on a socket claimed by :func:`pythonhosted.web.listener.claim` instead of letting
    granian bind its own (``SO_REUSEPORT``) one; forked workers inherit it.

    granian gets a duplicate descriptor because it closes the one it serves on when it stops;
    the claimed socket stays its owner's to close.
    """

    _claimed: socket.socket
    _ssp: Any
    _shd: Any
    _sfd: int
    backlog: int

    def _init_shared_socket(self) -> None:
        self._ssp = None
        self._sfd = os.dup(self._claimed.fileno())
        # granian's stub lists only Windows' one-argument form; Linux takes (fd, uds, backlog).
        self._shd = SocketHolder(self._sfd, False, self.backlog)  # type: ignore[call-arg]


class _EmbeddedServer(_ClaimedSocket, Server):  # type: ignore[misc]
    pass


class _MultiProcessServer(_ClaimedSocket, MPServer):  # type: ignore[misc]
    def _init_shared_socket(self) -> None:
        super()._init_shared_socket()
        self._sso = self._claimed  # what MPServer hands each worker process

    def _drop_shared_socket(self) -> None:
        """The claimed socket is closed by its owner (``run_workers``), not by granian."""

    # granian's abstract base declares a fourth parameter that MPServer's method does not take.
    def _spawn_worker(self, idx: int, target: Any, callback_loader: Any) -> Any:  # type: ignore[override]
        """granian's worker, forked holding the stop signals until it can act on them
        (:func:`pythonhosted.web.drain.stops_held`): a stop while it starts is not lost."""
        worker = super()._spawn_worker(idx, target, callback_loader)
        worker.inner.start = functools.partial(_fork_holding_stops, worker.inner.start)
        return worker


def _fork_holding_stops(start: Callable[[], None]) -> None:
    with stops_held():
        start()


class EarlyStop:
    """SIGINT/SIGTERM that arrive before a long-running command has its own handlers (for a
    server: after its address is claimed, when clients can already connect): remembered, so
    that stop is graceful too.

    Without it the default action killed the process in that gap, startup work unshipped.
    """

    def __init__(self, signals: Sequence[signal.Signals] = STOP_SIGNALS) -> None:
        self.requested = False
        for signum in signals:
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.requested = True


def _server(
    app: ASGIApp, served: ASGIApp, listener: socket.socket, limits: ServerLimits, ours: bool
) -> Server | H1Server:
    """``served`` (``app`` in its drain) on granian, or on our own server when ``app`` answers
    some requests inside the connection (:mod:`pythonhosted.web.h1`) or ``ours`` asks."""
    quick = getattr(app, "quick", None)
    if quick is not None or ours:
        return H1Server(served, listener, limits, quick)
    host, port = listener.getsockname()[:2]
    server = _EmbeddedServer(served, address=host, port=port, **_options(limits))
    server._claimed = listener
    return server


def _interrupt(server: Server | H1Server) -> None:
    if isinstance(server, H1Server):
        server.stop()
    else:
        server.signal_handler_interrupt()  # type: ignore[no-untyped-call]


def run_workers(
    factory: str,
    bind: Bind,
    workers: int,
    limits: ServerLimits,
    on_listening: Callable[[], None] = lambda: None,
    quick: bool = False,
) -> None:
    """Serve ``factory`` (``module:function`` returning an ASGI app) in ``workers`` processes:
    granian's, or ours when the app answers quickly (``quick``: :mod:`.h1.workers`).

    One Python process saturates one core; this is how a service uses the rest. Each worker
    builds its own app from the environment (settings travel as ``PYTHONHOSTED_*`` variables),
    so each has its own caches and download-log spool; their metrics meet in a directory that
    lives as long as this call (:mod:`pythonhosted.web.metrics`), so a scrape sees totals.
    The workers share one listening socket claimed here, so a second instance cannot.
    """
    wanted, limits = limits, limits.within_descriptors()
    early = EarlyStop()
    listener = claim(bind, limits.backlog, limits.send_timeout)
    report_lowered(wanted, [(bind, limits)])
    on_listening()  # a banner printed now tells the truth: the addresses are ours
    with listener, tempfile.TemporaryDirectory(prefix="pythonhosted-metrics-") as shared:
        handoff = {
            SHARED_DIR_ENV: shared,
            WORKER_APP_ENV: factory,
            WORKER_DRAIN_ENV: str(limits.drain_timeout),
        }
        os.environ.update(handoff)
        try:
            if quick:
                serve_processes(factory, listener, workers, limits, early.requested)
                return
            server = _MultiProcessServer(
                "pythonhosted.web.drain:worker_app",
                address=bind.host,
                port=bind.port,
                workers=workers,
                factory=True,
                loop=Loops.uvloop,
                # A worker exits by itself after its drain; this is for one that cannot.
                workers_kill_timeout=math.ceil(limits.drain_timeout) + KILL_MARGIN,
                **_options(limits),
            )
            server._claimed = listener

            # granian installs its signal handlers just before its startup hooks run.
            def stop_if_requested() -> None:
                if early.requested:
                    server.signal_handler_interrupt()  # type: ignore[no-untyped-call]

            server.on_startup(stop_if_requested)
            server.serve()
        finally:
            for name in handoff:
                del os.environ[name]


async def serve_until(
    apps: Sequence[tuple[ASGIApp, socket.socket]],
    stop: asyncio.Event,
    limits: ServerLimits,
    each: Sequence[ServerLimits] | None = None,
    ours: bool = False,
) -> None:
    """Serve every app on its claimed socket until ``stop`` is set, then drain: requests in
    flight get ``limits.drain_timeout`` to finish and are cut after it, and each app's stop
    hooks run either way (:mod:`.drain`). ``each``: every app's own limits, else ``limits``;
    ``ours``: every app on our own server, not only those with quick answers."""
    draining = [Draining(app) for app, _ in apps]
    own = each or [limits] * len(apps)
    servers = [
        _server(app, drained, listener, app_limits, ours)
        for drained, (app, listener), app_limits in zip(draining, apps, own, strict=True)
    ]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    stop_began().set()
    for server in servers:
        _interrupt(server)
    if not await cut_after(draining, set(tasks), limits.drain_timeout):
        for task in tasks:
            task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


def run(
    apps: Sequence[tuple[ASGIApp, Bind]],
    limits: ServerLimits,
    on_listening: Callable[[], None] = lambda: None,
    weights: Sequence[int] | None = None,
    ours: bool = False,
) -> None:
    """Blocking entry point for the CLI: SIGINT/SIGTERM/SIGHUP stop gracefully (buffers
    flushed). ``ours``: every app on our own server (:func:`serve_until`).

    Every address is claimed before anything is served, so an address in use fails the
    command at once (:class:`ListenError`) rather than after some apps started. Apps in one
    process share its open-file limit by ``weights`` (default: equally), none below a floor
    (:func:`~.listener.descriptor_shares`).
    """
    raise_open_file_limit()
    shares = descriptor_shares(weights or [1] * len(apps), usable_descriptors())
    each = [limits.within_descriptors(share) for share in shares]
    early = EarlyStop(SINGLE_PROCESS_STOP_SIGNALS)
    listeners = claim_all([bind for _, bind in apps], limits.backlog, limits.send_timeout)
    report_lowered(limits, [(bind, fitted) for (_, bind), fitted in zip(apps, each, strict=True)])
    on_listening()  # a banner printed now tells the truth: the addresses are ours

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in SINGLE_PROCESS_STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        if early.requested:
            stop.set()
        served = [(app, listener) for (app, _), listener in zip(apps, listeners, strict=True)]
        await serve_until(served, stop, limits, each, ours)

    try:
        uvloop.run(main())
    finally:
        for listener in listeners:
            listener.close()


@contextlib.contextmanager
def running(
    app: ASGIApp, host: str = "127.0.0.1", limits: ServerLimits | None = None
) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a background thread; yield its base URL.

    Used by tests and benchmarks: real sockets, real HTTP, the same server as production.
    """
    limits = limits or ServerLimits()
    listener = claim(Bind(host, 0), limits.backlog, limits.send_timeout)
    bind = Bind(host, listener.getsockname()[1])
    loop = uvloop.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []
    stopped = threading.Event()  # the caller's stop, not the server ending by itself

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve_until([(app, listener)], stop, limits))
            if not stopped.is_set():
                failure.append(RuntimeError(f"the server on {bind.url()} ended by itself"))
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
        stopped.set()
        with contextlib.suppress(RuntimeError):  # its loop closed: it ended before, and says why
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        listener.close()
    if failure:
        raise failure[0]
