"""A service's own bounded threads for its long work, apart from asyncio's default pool.

``pythonhosted serve`` runs every service on one event loop, and ``asyncio.to_thread`` sends
work to that loop's one default pool (``min(32, cpus + 4)`` threads: 6 on a 2-core machine).
Long work there (a stats-web answer: a DuckDB query of hundreds of ms, or up to 10 s waiting
for a warehouse writer; an index page render: seconds for a large project) could hold every
thread, and the short I/O the other services' requests need (a local store's ``stat``,
camo's disk cache, uploads, the event log) queued behind it: with 32 stats-web answers
waiting for a writer, a cold download from a local store waited 10 s for them
(BENCHMARKS.md). Each service's long work now runs in its own :class:`Workers`, sized to what
that service lets run at once, and the default pool is left to short I/O, which no service's
long work can fill.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from pythonhosted.web.lifespan import Hook

P = ParamSpec("P")
T = TypeVar("T")


class Workers:
    """At most ``threads`` threads named ``name-N``, made when first needed (so an app used
    without its lifespan, as tests do, works too) and shut down by :meth:`stop`."""

    def __init__(self, name: str, threads: int) -> None:
        self.name = name
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

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
        work under way is waited for, without blocking the loop, which goes on stopping the
        other services (flushing their logs) meanwhile."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    @property
    def hooks(self) -> tuple[Hook, Hook]:
        """(start, stop), for the app's lifespan."""
        return self.start, self.stop
