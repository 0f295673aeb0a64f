"""Concurrent requests for one missing thing share one fetch.

A burst of requests for an object nobody has asked for yet (a new release, a cold project)
would otherwise hit the store or the upstream once per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Future[V]] = {}

    def busy(self, key: K) -> bool:
        """Whether a fetch for ``key`` is already in flight (a call would join it)."""
        return key in self._inflight

    async def run(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        """``fetch()``'s result, shared by every concurrent call for ``key``.

        Shielded: one caller going away (a client hanging up) does not cancel the fetch the
        others wait on.
        """
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(fetch())
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(future)

    def _finished(self, key: K, done: asyncio.Future[V]) -> None:
        self._inflight.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: a failure nobody awaited any more is not "lost"
