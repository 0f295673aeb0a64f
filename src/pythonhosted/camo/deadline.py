"""The proxy's one deadline per request: ``asyncio.timeout`` without its per-use lookups.

Each upstream exchange runs under a deadline. ``asyncio.timeout`` finds the running loop and
task anew on every use, and on Python 3.11 each lookup is a ``getpid()`` system call (0.5-2 µs
on a VM), besides the Python of its state machine: ~4 µs per use in a tight loop, ~6 µs of the
app's CPU per uncached image in the proxy (bench/camo_app.py; BENCHMARKS.md, camo session 6).
:class:`Deadline` takes the loop and task it needs and keeps asyncio's semantics: when the
deadline passes, the task is cancelled, and the block ends with ``TimeoutError`` unless
something else cancelled the task too (then the cancellation goes on).
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    """``async with Deadline(loop, task, seconds):`` - the block must run in ``task``."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_task")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object], seconds: float
    ) -> None:
        self._task = task
        self._expired = False
        self._cancelling = task.cancelling()
        self._handle = loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    async def __aenter__(self) -> Deadline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._handle.cancel()
        if (
            self._expired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
