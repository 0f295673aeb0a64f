"""Telling the files edges to forget files: an authenticated ``PURGE`` per edge and path.

The edges are ``files.purge_urls`` when configured, else the edge this machine runs at
``files.bind`` (what ``pythonhosted serve`` and ``files serve`` listen on), with the purge
secret from ``files.purge_secret`` or the data dir. An edge is a process with its caches in
memory, so a refused connection to the default edge means none runs there and there is
nothing to forget: that is a note, not a failure. Configured edges must all confirm: a purge
that a takedown depends on is not left to chance.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=5.0)


@dataclass(frozen=True, slots=True)
class PurgeOutcome:
    url: str
    status: int | None  # None: no HTTP answer
    reason: str  # why it failed ("" when the edge answered 200)
    refused: bool = False  # the connection was refused: no process listens there

    @property
    def ok(self) -> bool:
        return self.status == 200


async def purge(edges: Sequence[str], secret: str, paths: Sequence[str]) -> list[PurgeOutcome]:
    """``PURGE`` every path on every edge, all at once; one outcome per request, in order."""
    headers = {"Authorization": f"Bearer {secret}"}
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=headers) as session:
        urls = [edge.rstrip("/") + path for edge in edges for path in paths]
        return list(await asyncio.gather(*(_purge_one(session, url) for url in urls)))


async def _purge_one(session: aiohttp.ClientSession, url: str) -> PurgeOutcome:
    try:
        async with session.request("PURGE", url) as response:
            text = (await response.text(errors="replace")).strip()
            reason = "" if response.status == 200 else f"{response.status} {text}".strip()
            return PurgeOutcome(url, response.status, reason)
    except aiohttp.ClientConnectorError as exc:
        refused = exc.os_error.errno == errno.ECONNREFUSED
        return PurgeOutcome(url, None, "connection refused" if refused else str(exc), refused)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return PurgeOutcome(url, None, str(exc) or type(exc).__name__)
