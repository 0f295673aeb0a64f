"""A share of camo's stream slots per image host, so one slow host cannot take them all.

Each uncached image holds a stream slot (:mod:`pythonhosted.web.streams`) for its upstream
exchange, and slots go first come, first served. One image host that answers slowly (or not
at all within ``--timeout``) held every slot as soon as as many of its images were asked for
at once, and the images of every other host queued behind them, served only once the
hanging ones reached their deadline (504), and 503 when the wait was longer than theirs:
4,000 images of a hanging host kept 500 of a healthy one waiting 51 s (``--timeout=60s``).
Each host (name and port of the first hop) now holds at most ``1 / HOST_SHARE`` of the
pool; its further images wait for one of its own turns, within the same bound and without
holding a slot, so the other hosts are served meanwhile.
"""

from __future__ import annotations

import asyncio

from pythonhosted.web.streams import StreamSlots

#: one host holds at most a quarter of the pool
HOST_SHARE = 4


class HostTurns:
    """The pool's slots, taken per host within that host's share."""

    def __init__(self, pool: StreamSlots) -> None:
        self._pool = pool
        # Only hosts with an exchange under way or waiting: bounded by the requests in flight.
        self._hosts: dict[str, StreamSlots] = {}

    async def take(self, host: str, wait: float) -> None:
        """One of ``host``'s turns and then a slot, within ``wait`` seconds in all;
        :class:`~pythonhosted.web.streams.Busy` after that. Give it back with
        :meth:`give_back`."""
        turns = self._hosts.get(host)
        if turns is None:
            turns = self._hosts[host] = StreamSlots(max(1, self._pool.size // HOST_SHARE))
        held = turns.take_now()
        if held and self._pool.take_now():
            return  # the common case: no coroutine
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        if not held:
            try:
                await turns.take(wait)
            except BaseException:
                self._forget_if_idle(host, turns)
                raise
        try:
            if not self._pool.take_now():
                await self._pool.take(max(0.0, deadline - loop.time()))
        except BaseException:
            self._give_turn_back(host, turns)
            raise

    def give_back(self, host: str) -> None:
        self._pool.give_back()
        self._give_turn_back(host, self._hosts[host])

    def _give_turn_back(self, host: str, turns: StreamSlots) -> None:
        turns.give_back()
        self._forget_if_idle(host, turns)

    def _forget_if_idle(self, host: str, turns: StreamSlots) -> None:
        if turns.idle and self._hosts.get(host) is turns:
            del self._hosts[host]
