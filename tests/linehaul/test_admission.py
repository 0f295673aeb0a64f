"""Admission of log objects into a pass: small ones by the several, a large one alone, in
arrival order."""

from __future__ import annotations

import asyncio

from pythonhosted.linehaul.admission import Admission


def _run(sizes: list[int], limit: int, budget: int) -> list[list[int]]:
    """Admit objects of ``sizes`` (in order), each running until the next admission round;
    the groups of indexes that were under way together."""
    admission = Admission(limit, budget)
    under_way: set[int] = set()
    seen: list[list[int]] = []

    async def one(index: int, release: asyncio.Event) -> None:
        async with admission.admit(sizes[index]):
            under_way.add(index)
            seen.append(sorted(under_way))
            await release.wait()
            under_way.discard(index)

    async def scenario() -> None:
        releases = [asyncio.Event() for _ in sizes]
        tasks = [asyncio.create_task(one(i, releases[i])) for i in range(len(sizes))]
        for release in releases:  # let everything admissible in, then end the oldest
            for _ in range(5):
                await asyncio.sleep(0)
            release.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    return seen


def test_small_objects_come_in_by_the_several_up_to_the_limit() -> None:
    assert _run([1] * 6, limit=3, budget=100) == [
        [0],
        [0, 1],
        [0, 1, 2],
        [1, 2, 3],
        [2, 3, 4],
        [3, 4, 5],
    ]


def test_a_large_object_waits_for_the_ones_under_way_and_runs_alone() -> None:
    """Object 2 weighs the whole budget: it waits for 0 and 1 to end, and 3 and 4 (small)
    wait behind it, though they would fit beside 1."""
    assert _run([10, 10, 500, 10, 10], limit=4, budget=100) == [
        [0],
        [0, 1],
        [2],
        [3],
        [3, 4],
    ]


def test_weights_add_up_to_the_budget() -> None:
    assert _run([40, 40, 40, 40], limit=4, budget=100) == [[0], [0, 1], [1, 2], [2, 3]]


def test_a_waiter_cancelled_in_line_does_not_hold_up_the_ones_behind_it() -> None:
    admission = Admission(1, 100)

    async def scenario() -> list[str]:
        order: list[str] = []
        first = asyncio.Event()

        async def hold() -> None:
            async with admission.admit(1):
                order.append("first")
                await first.wait()

        async def later(name: str) -> None:
            async with admission.admit(1):
                order.append(name)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(later("cancelled"))
        behind = asyncio.create_task(later("behind"))
        await asyncio.sleep(0)
        cancelled.cancel()
        first.set()
        await asyncio.gather(holder, behind)
        assert cancelled.cancelled()
        return order

    assert asyncio.run(scenario()) == ["first", "behind"]
