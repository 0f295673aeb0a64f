"""camo's share of stream slots per image host, through its Python API (``HostTurns``)."""

from __future__ import annotations

import asyncio

import pytest

from pythonhosted.camo.hostturns import HostTurns
from pythonhosted.web.streams import Busy, StreamSlots


def test_a_host_waits_for_its_own_turn_and_a_full_pool_gives_the_turn_back() -> None:
    """A pool of 8 slots: each host holds at most 2. A host at its share waits for one of its
    own turns while the others are served; a host that has a turn but finds the pool full
    waits for a slot, and gives its turn back when that wait runs out."""

    async def scenario() -> None:
        pool = StreamSlots(size=8)
        turns = HostTurns(pool)
        for host in ("a", "a", "b", "b", "c", "c"):
            await turns.take(host, 1)
        with pytest.raises(Busy):
            await turns.take("a", 0.01)  # its share is taken: a turn of its own, not a slot
        assert (pool.free, pool.waiting) == (2, 0)
        await turns.take("d", 1)
        await turns.take("e", 1)
        with pytest.raises(Busy):
            await turns.take("f", 0.01)  # a turn of its own, but no slot: given back
        waiting = asyncio.create_task(turns.take("a", 5))
        await asyncio.sleep(0)
        turns.give_back("a")  # the slot goes to the waiting request of a
        await waiting
        assert (pool.free, pool.waiting) == (0, 0)
        for host in ("a", "a", "b", "b", "c", "c", "d", "e"):
            turns.give_back(host)
        for host in ("f", "f"):  # f left no turn held behind
            await turns.take(host, 0.01)
        assert pool.free == 6

    asyncio.run(scenario())
