"""Which thread pool does what, so that no service's long work holds another's short I/O.

``pythonhosted serve`` runs every service on one event loop, and ``asyncio.to_thread`` sends
work to that loop's one default pool (``min(32, cpus + 4)`` threads: 6 on a 2-core machine).
Long work there (a stats-web answer: a DuckDB query of hundreds of ms, or up to
``read_wait`` seconds waiting for a warehouse writer; an index page render: seconds for a
large project; linehaul converting log objects, 8 at once) could hold every thread, and the
short I/O the other services' requests need queued behind it: with 16 stats-web answers
waiting for a writer, a cold download from a local store and an index page waited 20 s for
them (BENCHMARKS.md, "Thread pools"). So:

- long work a service admits many of at once runs in that service's own :class:`Workers`,
  sized to what it admits (the stats web's answers, the index's renders), shut down at the
  app's stop;
- short blocking I/O on a request's path (a local store's ``stat`` and sidecar read, camo's
  disk-cache check) runs in :func:`short_io`'s pool, which nothing long is sent to, so no
  service's long work can fill it;
- background jobs' blocking work (linehaul's conversions of log objects, a part of seconds
  each for up to ``ingest_concurrency`` objects at once, and its warehouse loads) runs in
  :func:`background`'s pool: in the default pool it held the threads that a cold
  ``.metadata`` sidecar's compression or conveyor's blocking steps wait for in ``serve``;
- the rest (uploads, the event log's shipping, a local store's listing, short steps of
  requests) stays in the default pool.

Threads share one GIL with the event loop, and a pool's size says how many may *wait* (for a
warehouse writer, for DuckDB), not how many should run Python at once: with N threads
running Python the loop gets the GIL about once per N switch intervals
(``sys.getswitchinterval()``, 5 ms; a thread that asks for it is not the one it goes to).
In ``serve`` at load 12-16 every service's ``/_health`` paused 0.5-2.7 s at once while up
to 16 stats-web answers, index renders and linehaul's threads ran (BENCHMARKS.md, "``serve``
at production shape"). So long work runs its Python inside :func:`computing`, which lets
:data:`PYTHON_AT_ONCE` threads of the whole process in at a time; the others sleep on a
lock, which costs no GIL, and its waits (for a writer, for the file) stay outside. A bound,
where a shorter switch interval only divides the wait: ``bench/gil_turns.py`` measures both
(BENCHMARKS.md); on the loaded 2-core machine the loop's lag and the answers per second
moved by less than the spread between runs with either, the lag being set mostly by the
system's scheduling.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
# Short calls only (a stat, a small read): enough for a burst of cold requests to overlap
# their waits on the disk, as many as the default pool has on a 4-core machine.
SHORT_IO_THREADS = 8
# As many as linehaul's ingest runs objects at once by default (``ingest_concurrency``), and
# a publish's load; more would only queue for the GIL (the converter holds it).
BACKGROUND_THREADS = 9
# Threads running long work's Python at once (:func:`computing`): two, so that one answer's
# DuckDB query (which lets the GIL go) runs on the second core while another builds its rows,
# and the loop competes with two threads for the GIL, not with every pool's.
PYTHON_AT_ONCE = 2
# Of those, how many long work may hold at once (:func:`computing`'s ``long``): one fewer, so
# a turn is always there for short work, however many long answers wait for theirs.
LONG_AT_ONCE = PYTHON_AT_ONCE - 1


class Workers:
    """At most ``threads`` threads named ``name_N``, made when first needed (so an app used
    without its lifespan, as tests do, works too) and shut down by :meth:`stop`."""

    def __init__(self, name: str, threads: int) -> None:
        self.name = name
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        _EVERY.add(self)

    async def run(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)`` in one of the threads, as ``asyncio.to_thread`` runs it
        (in a copy of this task's context); cancelled while queued for a thread, it never
        runs."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
        bound = functools.partial(contextvars.copy_context().run, call, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, bound)

    async def start(self) -> None:
        """The lifespan's start (:attr:`hooks`): nothing to do, threads come when needed."""

    async def stop(self) -> None:
        """At the app's stop: work still queued is dropped (its callers are cancelled), and
        work under way is waited for without blocking the loop, which goes on stopping the
        other services (flushing their logs) meanwhile."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    @property
    def hooks(self) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
        """(start, stop), for the app's lifespan."""
        return self.start, self.stop


_EVERY: weakref.WeakSet[Workers] = weakref.WeakSet()


def _forget_the_parents_threads() -> None:
    """In a forked child: a pool made before the fork counts threads only the parent has,
    and work sent to it would wait for them forever; the child makes its own."""
    global _COMPUTING, _LONG
    for workers in _EVERY:
        workers._pool = None
    _COMPUTING = threading.BoundedSemaphore(PYTHON_AT_ONCE)  # the parent's holders are gone
    _LONG = threading.BoundedSemaphore(LONG_AT_ONCE)


_COMPUTING = threading.BoundedSemaphore(PYTHON_AT_ONCE)
_LONG = threading.BoundedSemaphore(LONG_AT_ONCE)
os.register_at_fork(after_in_child=_forget_the_parents_threads)
_SHORT_IO = Workers("short-io", SHORT_IO_THREADS)
_BACKGROUND = Workers("background", BACKGROUND_THREADS)


async def short_io(call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``call(*args, **kwargs)`` in the process's pool for short blocking I/O (see the module
    doc): never behind anybody's long work. The pool is every service's and every event
    loop's, so it outlives each app; its idle threads end with the process."""
    return await _SHORT_IO.run(call, *args, **kwargs)


async def background(call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``call(*args, **kwargs)`` in the process's pool for background jobs' blocking work (see
    the module doc): never in the threads requests wait for. Every service's and every event
    loop's, as :func:`short_io`'s."""
    return await _BACKGROUND.run(call, *args, **kwargs)


@contextlib.contextmanager
def computing(*, long: bool = False) -> Iterator[None]:
    """For the block, one of the process's :data:`PYTHON_AT_ONCE` turns at running long
    work's Python (see the module doc): a pool's thread waits here, asleep, while the turns
    are taken. Take it after any wait for something else (a lock, a writer), never around
    one, and never inside another turn.

    ``long``: work that holds its turn for long (a stats-web answer of 100-400 ms against
    the 3-10 ms of a badge's) takes one of :data:`LONG_AT_ONCE` turns only: with every turn
    held by long answers, each short one (a badge, a revalidation) queued behind them, and
    right after a publish a few cold pages held up thousands of badges (BENCHMARKS.md,
    "The stats web right after a publish")."""
    with _LONG if long else contextlib.nullcontext(), _COMPUTING:
        yield
