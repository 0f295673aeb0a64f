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
# Purges in flight per edge. A release can have thousands of files (two purges each): sent
# all at once, they queued for the client's connections past TIMEOUT, and a delete of 20,000
# files reported every one of its 40,000 purges as timed out. An edge takes a purge in well
# under a millisecond, so 32 at a time keep it busy without queueing.
IN_FLIGHT = 32


@dataclass(frozen=True, slots=True)
class PurgeOutcome:
    url: str
    status: int | None  # None: no HTTP answer
    reason: str  # why it failed ("" when the edge answered 200)
    refused: bool = False  # the connection was refused: no process listens there
    skipped: bool = False  # not sent: the edge gave no answer to an earlier purge

    @property
    def ok(self) -> bool:
        return self.status == 200


async def purge(edges: Sequence[str], secret: str, paths: Sequence[str]) -> list[PurgeOutcome]:
    """``PURGE`` every path on every edge, :data:`IN_FLIGHT` at a time per edge; one outcome
    per request, in order (edge by edge, each in the order of ``paths``).

    An edge that gives no HTTP answer (refused, timed out, unreachable) is not sent the rest:
    they would each wait the same way (a blackholed edge, TIMEOUT per purge). They get the
    outcome of the first that failed so, with ``skipped`` set."""
    headers = {"Authorization": f"Bearer {secret}"}
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT * max(len(edges), 1))
    async with aiohttp.ClientSession(
        timeout=TIMEOUT, headers=headers, connector=connector
    ) as session:
        per_edge = await asyncio.gather(*(_purge_edge(session, edge, paths) for edge in edges))
    return [outcome for outcomes in per_edge for outcome in outcomes]


async def _purge_edge(
    session: aiohttp.ClientSession, edge: str, paths: Sequence[str]
) -> list[PurgeOutcome]:
    urls = [edge.rstrip("/") + path for path in paths]
    outcomes: list[PurgeOutcome | None] = [None] * len(urls)
    unanswered: list[PurgeOutcome] = []
    pending = iter(range(len(urls)))

    async def work() -> None:
        for index in pending:
            if unanswered:
                first = unanswered[0]
                outcomes[index] = PurgeOutcome(
                    urls[index], None, first.reason, first.refused, skipped=True
                )
                continue
            outcome = await _purge_one(session, urls[index])
            if outcome.status is None:
                unanswered.append(outcome)
            outcomes[index] = outcome

    await asyncio.gather(*(work() for _ in range(min(IN_FLIGHT, len(urls)))))
    return [outcome for outcome in outcomes if outcome is not None]


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
