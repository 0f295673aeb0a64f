"""The background jobs' loop: the pause between passes, cut short by the stop event, and a
failed pass's reason in one line."""

from __future__ import annotations

import asyncio
import contextlib


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def reason(exc: BaseException) -> str:
    """An error in one line for a log or a health answer: its message's first line, else its
    type's name."""
    lines = str(exc).splitlines()
    return lines[0] if lines and lines[0] else type(exc).__name__
