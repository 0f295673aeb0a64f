"""The proxy's per-request deadline keeps asyncio.timeout's semantics."""

from __future__ import annotations

import asyncio
import time

import pytest

from pythonhosted.camo.deadline import Deadline


def deadline(seconds: float) -> Deadline:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    assert task is not None
    return Deadline(loop, task, seconds)


def test_passing_the_deadline_raises_timeout_error() -> None:
    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            async with deadline(0.01):
                await asyncio.Event().wait()  # never set
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_a_block_done_in_time_is_left_alone() -> None:
    async def scenario() -> str:
        async with deadline(0.05):
            await asyncio.sleep(0)
        await asyncio.sleep(0.15)  # past the deadline: its timer was cancelled on leaving
        return "done"

    assert asyncio.run(scenario()) == "done"


def test_a_cancellation_from_outside_is_not_turned_into_a_timeout() -> None:
    async def inner(entered: asyncio.Event) -> None:
        async with deadline(60):
            entered.set()
            await asyncio.Event().wait()

    async def scenario() -> None:
        entered = asyncio.Event()
        task = asyncio.create_task(inner(entered))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_an_outside_cancellation_at_the_deadline_still_cancels() -> None:
    """Both the deadline and someone else cancelled: the cancellation goes on, as in
    asyncio.timeout, so a server cancelling a request is never mistaken for a timeout."""

    async def inner() -> None:
        async with deadline(0.01):
            time.sleep(0.05)  # blocks the loop: both cancellations are due when it turns
            await asyncio.Event().wait()

    async def scenario() -> None:
        task = asyncio.create_task(inner())
        asyncio.get_running_loop().call_later(0.02, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
