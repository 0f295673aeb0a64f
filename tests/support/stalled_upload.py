"""``pythonhosted ARGS`` whose store writes stall, after the first one, until it is killed.

A test that kills an upload to see what a kill leaves must kill it while it is writing: an
upload of 750 small files to a local directory once ended between the test seeing its first
file stored and the kill (a loaded machine), and the test then saw a finished upload. Here the
first write lands and every later one waits forever, so the kill always meets an upload
under way. Run as a script: ``python stalled_upload.py docs upload ...`` (argv as the
command line takes it).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from pythonhosted.cli import run
from pythonhosted.storage import DirectoryStore, Store

LANDING = 1
"""How many writes start and land; the ones that start after them never end."""

_started = 0


def _stalling(put: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(put)
    async def stalled(self: Store, *args: Any, **options: Any) -> None:
        global _started
        _started += 1
        if _started > LANDING:
            await asyncio.Event().wait()
        await put(self, *args, **options)

    return stalled


if __name__ == "__main__":
    for kind in (Store, DirectoryStore):
        for name in ("put", "put_stream"):
            if name in vars(kind):
                setattr(kind, name, _stalling(vars(kind)[name]))
    run()  # the command line, as `python -m pythonhosted` runs it
