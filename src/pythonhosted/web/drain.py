"""A stop that ends: in-flight requests get ``http.drain_timeout`` to finish, then are cut.

granian's graceful stop waits for every open connection to finish its response, with no
deadline, and runs the apps' stop hooks (which flush the download log and the other buffers)
only after that. One client that stalls in the middle of a large download therefore kept a
stopped server alive for as long as it stayed connected (300 stalled downloads: still running
60 s after SIGTERM), and its address taken, so a restart could not bind it. granian cannot
close a connection from outside, so the bound is kept here, around each app:

- :class:`Draining` knows the app's requests in flight (each is an asyncio task) and runs the
  app's lifespan itself, so its stop hooks can run before granian would run them;
- at the deadline, :meth:`Draining.cut` cancels what is still in flight (the app's own
  ``finally`` blocks run: a cut download is still logged), then runs the stop hooks once.

The server then stops waiting for granian and returns; the process exits and the kernel
closes the connections that were left.

A request that waits on work longer than any drain (the index's first walk of a million-project
catalog) can answer at once instead: :func:`unless_stopping` ends its wait when the stop
begins (:func:`stop_began`, set before the drain), so the stop is not held for the whole
``http.drain_timeout`` only to cut that request with a 500.

The workers of ``--workers N`` are granian's processes, which stop on their own SIGTERM with
granian's handler: :func:`worker_app` wraps each worker's app so that the same signal also
starts the deadline there (:class:`WorkerDrain`), and the worker exits once it has cut what
was left and run its stop hooks.

A worker is forked with SIGINT/SIGTERM held (:func:`stops_held`) and lets them through only
once it can act on them (:class:`WorkerDrain`, at its lifespan's start): a stop that arrives
while it starts waits in the kernel. Before, the handler it ran then was the one it inherited
from the main process (granian's, which only sets a flag in the worker's copy of the main
loop), so the stop was lost: a worker still building its app when the main process stopped
it started serving afterwards, and the stop waited for granian's kill timeout
(``http.drain_timeout`` + 60 s), holding the address. At load 10-20 a worker can still be
starting when the first clients are served and the stop comes: 2 stops in 11 with 4 workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import weakref
from asyncio import current_task
from collections.abc import Awaitable, Collection, Iterator, Sequence
from types import FrameType
from typing import Any, TypeVar

from pythonhosted.web.lifespan import Child
from pythonhosted.web.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# How a multi-process server tells its workers what to build and how long to drain: internal
# handoffs, not settings.
WORKER_APP_ENV = "_PYTHONHOSTED_WORKER_APP"
WORKER_DRAIN_ENV = "_PYTHONHOSTED_WORKER_DRAIN_TIMEOUT"

# How long cancelled requests get to unwind (their finally blocks) before the stop hooks run.
UNWIND_SECONDS = 2.0

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

T = TypeVar("T")
# Per event loop: several servers run in one process, each on a loop of its own (the tests').
_stops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
    weakref.WeakKeyDictionary()
)


def stop_began() -> asyncio.Event:
    """Set when the server on the running loop begins to stop, before its drain."""
    loop = asyncio.get_running_loop()
    event = _stops.get(loop)
    if event is None:
        event = _stops[loop] = asyncio.Event()
    return event


class Stopping(Exception):
    """The server began to stop while the request waited (:func:`unless_stopping`)."""


async def unless_stopping(work: Awaitable[T]) -> T:
    """``work``'s result; :class:`Stopping` (``work`` cancelled) when the server begins to stop
    first. For waits that may outlast ``http.drain_timeout``: the request answers at once
    (a 503 saying why), and the stop does not wait on it. Work that ends in its first steps
    (nothing to wait for) still gives its result during a stop."""
    waiting = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop_began().wait())
    try:
        await asyncio.wait((waiting, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not waiting.done():
            waiting.cancel()
    if not waiting.done() or waiting.cancelled():
        raise Stopping
    return waiting.result()


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """SIGINT/SIGTERM held (blocked) in this thread for the block: a process forked in it is
    born holding them, and the kernel keeps one sent to it until it lets them through."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Draining:
    """``app`` with its requests in flight counted and its stop hooks run at most once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: set[asyncio.Task[object]] = set()
        # The serving loop, looked up once: on Python 3.11 every ``get_running_loop()`` (and
        # ``current_task()`` without a loop) makes a getpid() system call, the dearest thing
        # this frame did per request (perf: 2-4 % of a camo cache hit's CPU).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lifespan: Child | None = None
        self._stopping: asyncio.Future[Message] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every request's way in: kept to a few hundred nanoseconds (a set add and discard)."""
        if scope["type"] == "lifespan":
            await self._serve_lifespan(scope, receive, send)
            return
        task = current_task(self._loop) if self._loop is not None else None
        if task is None:  # first request, or another loop than the last (an app run again)
            self._loop = asyncio.get_running_loop()
            task = current_task(self._loop)
        if task is None:  # not run by a task: nothing to cut, nothing to count
            await self.app(scope, receive, send)
            return
        requests = self.requests
        requests.add(task)
        try:
            await self.app(scope, receive, send)
        finally:
            requests.discard(task)

    async def _serve_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._lifespan = Child(self.app, scope)
                answer = await self._lifespan.event("startup")
                await send(answer)
                if answer["type"].endswith("failed"):
                    return
            elif message["type"] == "lifespan.shutdown":
                await send(await self.stop_hooks())
                return

    async def stop_hooks(self) -> Message:
        """Run the app's stop hooks, once, whoever asks first (granian or :meth:`cut`)."""
        if self._stopping is None:
            if self._lifespan is None:
                done: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
                done.set_result({"type": "lifespan.shutdown.complete"})
                self._stopping = done
            else:
                self._stopping = asyncio.ensure_future(self._lifespan.event("shutdown"))
        return await asyncio.shield(self._stopping)

    async def cut(self) -> int:
        """Cancel the requests still in flight, let them unwind, run the stop hooks; return
        how many were cut."""
        cut = list(self.requests)
        for task in cut:
            task.cancel()
        if cut:
            await asyncio.wait(cut, timeout=UNWIND_SECONDS)
        await self.stop_hooks()
        return len(cut)


async def cut_after(
    apps: Sequence[Draining], left: Collection[asyncio.Future[Any]], timeout: float
) -> bool:
    """Wait up to ``timeout`` for ``left`` (the servers' own stops); past it, cut every app's
    requests in flight and run its stop hooks. Return whether the servers finished."""
    if left:
        _, left = await asyncio.wait(left, timeout=timeout)
    if not left:
        return True
    await _cut(apps, timeout)
    # What the servers still wait for are connections the process's exit closes.
    _, left = await asyncio.wait(left, timeout=UNWIND_SECONDS)
    return not left


async def _cut(apps: Sequence[Draining], timeout: float) -> None:
    cut = sum(await asyncio.gather(*(app.cut() for app in apps)))
    if cut:
        log.warning(
            "stopped with %d %s still in flight after http.drain_timeout (%gs): cut",
            cut,
            "request" if cut == 1 else "requests",
            timeout,
        )
    else:  # "0 requests in flight" read as a stop that waited for nothing
        log.warning(
            "stopped with connections still open after http.drain_timeout (%gs), no request "
            "in flight: closed",
            timeout,
        )


class WorkerDrain(Draining):
    """:class:`Draining` in a worker process of granian's: the deadline starts at the
    worker's SIGTERM/SIGINT, and the worker exits once it has cut and flushed."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        super().__init__(app)
        self.timeout = timeout
        self._served: asyncio.Future[None] | None = None
        self._deadline_started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self._served is None:
            loop = asyncio.get_running_loop()
            self._served = loop.create_future()

            def stop_requested(signum: int, frame: FrameType | None) -> None:
                if not self._deadline_started:
                    self._deadline_started = True
                    loop.call_soon_threadsafe(lambda: stop_began().set())
                    loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._deadline()))

            # granian's own handler stays (the loop's); a Python handler runs beside it.
            for signum in STOP_SIGNALS:
                signal.signal(signum, stop_requested)
            # Both can act now: a stop held since the fork is delivered here (stops_held).
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            try:
                await super().__call__(scope, receive, send)
            finally:
                if not self._served.done():
                    self._served.set_result(None)
            return
        await super().__call__(scope, receive, send)

    async def _deadline(self) -> None:
        assert self._served is not None
        _, left = await asyncio.wait({self._served}, timeout=self.timeout)
        if left:
            await _cut([self], self.timeout)
            # Flushed. What is left are connections the exit closes; granian's own exit
            # waits for them, so the worker does not wait for granian.
            logging.shutdown()
            os._exit(0)


def worker_app() -> ASGIApp:
    """The entry point granian's worker processes call: the service's own factory (named by
    ``run_workers`` in the environment), wrapped in :class:`WorkerDrain`."""
    module, _, name = os.environ[WORKER_APP_ENV].partition(":")
    factory = getattr(importlib.import_module(module), name)
    return WorkerDrain(factory(), float(os.environ[WORKER_DRAIN_ENV]))
