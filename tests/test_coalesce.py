"""A shared fetch outlives callers that leave; with ``abandon``, not the last of them."""

from __future__ import annotations

import asyncio

from pythonhosted.coalesce import Coalescer


async def _leave(task: asyncio.Task[str]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_an_abandoned_fetch_is_cancelled_only_when_its_last_caller_leaves() -> None:
    async def scenario() -> tuple[list[str], str]:
        events: list[str] = []
        release = asyncio.Event()

        async def fetch() -> str:
            try:
                await release.wait()
            except asyncio.CancelledError:
                events.append("cancelled")
                raise
            return "answer"

        coalescer: Coalescer[str, str] = Coalescer(abandon=True)
        first = asyncio.ensure_future(coalescer.run("k", fetch))
        second = asyncio.ensure_future(coalescer.run("k", fetch))
        await asyncio.sleep(0)
        await _leave(first)
        events.append("one left")
        await asyncio.sleep(0)
        await _leave(second)
        await asyncio.sleep(0)
        # a caller after them starts afresh, and is answered
        release.set()
        return events, await coalescer.run("k", fetch)

    assert asyncio.run(scenario()) == (["one left", "cancelled"], "answer")


def test_without_abandon_a_fetch_runs_on_when_every_caller_left() -> None:
    async def scenario() -> list[str]:
        events: list[str] = []
        release = asyncio.Event()

        async def fetch() -> str:
            await release.wait()
            events.append("finished")
            return "answer"

        coalescer: Coalescer[str, str] = Coalescer()
        caller = asyncio.ensure_future(coalescer.run("k", fetch))
        await asyncio.sleep(0)
        await _leave(caller)
        release.set()
        assert await coalescer.run("k", fetch) == "answer"  # joins the one still running
        return events

    assert asyncio.run(scenario()) == ["finished"]
