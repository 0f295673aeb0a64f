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
    """``abandon``: cancel a fetch once every caller waiting for it has gone (been cancelled),
    for work that is worth nothing to anyone else (an answer computed for clients that hung
    up). Otherwise a fetch runs to its end whoever waits, so a result others will ask for
    (a body being cached) is not thrown away half made."""

    def __init__(self, *, abandon: bool = False) -> None:
        self._inflight: dict[K, asyncio.Future[V]] = {}
        self._abandon = abandon
        self._waiting: dict[asyncio.Future[V], int] = {}  # callers per fetch, when abandoning

    def busy(self, key: K) -> bool:
        """Whether a fetch for ``key`` is already in flight (a call would join it)."""
        return key in self._inflight

    async def run(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        """``fetch()``'s result, shared by every concurrent call for ``key``.

        Shielded: one caller going away (a client hanging up) does not cancel the fetch the
        others wait on; with ``abandon``, the last one going away does.
        """
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(fetch())
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._finished(key, done))
        if not self._abandon:
            return await asyncio.shield(future)
        self._waiting[future] = self._waiting.get(future, 0) + 1
        try:
            return await asyncio.shield(future)
        finally:
            left = self._waiting.pop(future, 1) - 1
            if left > 0:
                self._waiting[future] = left
            elif not future.done():
                if self._inflight.get(key) is future:
                    del self._inflight[key]  # a caller arriving now starts afresh
                future.cancel()

    def _finished(self, key: K, done: asyncio.Future[V]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failure nobody awaited any more is not "lost"
