"""Descriptors a request holds besides its connection, bounded per process.

A client connection is one descriptor, and the servers' connection bounds
(:meth:`pythonhosted.web.listener.ServerLimits.within_descriptors`) keep connections within
the open-file limit. Some requests hold more while their body is sent: the files edge and docs
hosting stream a large object through a descriptor of their own (a local file, or a store
connection), camo holds an upstream connection and the cache file it fills. Unbounded, 3,000
concurrent uncached images from a slow upstream took a camo under a 4,096-descriptor limit to
EMFILE: 796 answers were 500 (the cache's temporary file would not open) and 1,926 were 502.

So such a request first takes a *stream slot* from its service's pool: a slot stands for up
to two descriptors, and the pools of a process hold a third of the descriptors left after the
reserve.
The pool is not carved out of the connection bounds: that would cost idle capacity (10,000
idle connections to ``serve``'s files edge must leave ``/_health`` answering); connections
and streams only pass the limit together when both are at their bounds at once, and then
what fails is bounded: an open that fails answers 503, a cache file that cannot be written
only leaves the image uncached. A request that finds no slot free waits its turn (first
come, first served) for at most ``wait`` seconds, and then gets :class:`Busy`: a slow reader
holds its slot for as long as it reads, so waiting without a bound would let a few thousand
of them stall every other download.

Each service has a pool of its own (:func:`slots_of`): ``serve`` runs several in one process
and shares the pool out by the weights it shares connections by (:func:`share_out`), so a
flood of slow images cannot take the slots the files edge's downloads need. A service alone
in its process has the whole pool.

The fast path is a counter, no coroutine: camo and the edge take a slot per request.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping

from pythonhosted.web.listener import STREAM_PART, usable_descriptors

#: descriptors one slot stands for (camo: the upstream connection and the cache's file)
SLOT_DESCRIPTORS = 2


class Busy(Exception):
    """No stream slot came free within the wait: answer 503, the client may retry."""


class StreamSlots:
    """A counting semaphore with a synchronous fast path and a bounded wait.

    The waiters queue in an ``OrderedDict`` (the first out is the first in, and one that
    leaves early goes in O(1)): in a ``deque`` each waiter's exit scanned the queue for
    itself, and 30,000 waiters on one pool took 10.9 s of CPU to be handed their slots.
    """

    def __init__(self, size: int | None = None, share: Callable[[], float] = lambda: 1.0) -> None:
        self._size = size
        self._share = share
        self._free = size  # None until sized
        self._waiters: OrderedDict[asyncio.Future[None], None] = OrderedDict()

    @property
    def size(self) -> int:
        """Fixed, or sized at first use from the open-file limit then in force (servers raise
        the soft limit before they serve) and this pool's share of the process's, and kept:
        the free count starts from it, and working it out is a ``prlimit64`` system call (camo
        sized a host's share of its pool on each host's first image, ~15 % of misses)."""
        if self._size is None:
            whole = usable_descriptors() // STREAM_PART // SLOT_DESCRIPTORS
            self._size = max(1, int(whole * self._share()))
        return self._size

    @property
    def free(self) -> int:
        if self._free is None:
            self._free = self.size
        return self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def idle(self) -> bool:
        """Whether every slot is free and nobody waits (a pool never used is)."""
        return not self._waiters and (self._free is None or self._free == self._size)

    def take_now(self) -> bool:
        """One slot if one is free and nobody waits for it (no coroutine: the common case;
        the counter read directly, as the ``free`` property is a call each)."""
        free = self._free
        if free is None:
            free = self.free
        if free > 0 and not self._waiters:
            self._free = free - 1
            return True
        return False

    async def take(self, wait: float | None) -> None:
        """One slot, waiting at most ``wait`` seconds (None: no bound of its own, for a caller
        under a deadline of its own); :class:`Busy` after that."""
        if self.take_now():
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[turn] = None
        try:
            async with asyncio.timeout(wait):
                await turn
        except TimeoutError:
            if turn.done() and not turn.cancelled():
                return  # handed over just as the wait ran out: it is ours
            raise Busy(f"no stream slot free within {wait:g} s") from None
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.give_back()  # handed over just as the wait ended: pass it on
            raise
        finally:
            self._waiters.pop(turn, None)

    def give_back(self) -> None:
        while self._waiters:
            turn, _ = self._waiters.popitem(last=False)
            if not turn.done() and not turn.get_loop().is_closed():
                turn.set_result(None)  # the slot goes straight to the next in line
                return
        free = self._free
        self._free = (self.free if free is None else free) + 1


_shares: dict[str, float] = {}
_pools: dict[str, StreamSlots] = {}


def share_out(weights: Mapping[str, int]) -> None:
    """Split the process's slots between the services it runs by ``weights`` (before any
    request: pools are sized at their first use)."""
    total = sum(weights.values())
    _shares.clear()
    _shares.update({name: weight / total for name, weight in weights.items() if total})


def slots_of(service: str) -> StreamSlots:
    """The pool of ``service`` (a name of ``share_out``'s weights): its share of the
    process's slots, or all of them when the process runs it alone."""
    pool = _pools.get(service)
    if pool is None:
        pool = _pools[service] = StreamSlots(share=lambda: _shares.get(service, 1.0))
    return pool
