"""Many requests against a running server, a fixed number in flight at a time.

aiohttp rather than ``httpx.AsyncClient``: with 32 requests in flight httpx's connection pool
spends about 3 ms of the test's CPU per request (it walks every connection on each one), so
a flood of 3,000 requests took 10 s of the test's time against 0.9 s with aiohttp, and the
server under test is what such a test means to load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

NO_HEADERS: Mapping[str, str] = {}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # names in any case
    body: bytes


async def fetch_all(
    base_url: str,
    requests: Sequence[str | tuple[str, Mapping[str, str]]],
    *,
    concurrency: int = 32,
    timeout: float = 60.0,
) -> list[Answer]:
    """GET each path (with its headers, when given as a pair) on ``base_url``, at most
    ``concurrency`` at once over kept-alive connections; the answers in request order. A
    full URL is taken as it is, its percent-encoding untouched."""
    answers: list[Answer | None] = [None] * len(requests)
    queue = list(reversed(list(enumerate(requests))))
    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=client_timeout, auto_decompress=False
    ) as session:

        async def worker() -> None:
            while queue:
                index, request = queue.pop()
                path, headers = (request, NO_HEADERS) if isinstance(request, str) else request
                url = URL(base_url + path if path.startswith("/") else path, encoded=True)
                async with session.get(url, headers=headers, allow_redirects=False) as response:
                    body = await response.read()
                    answers[index] = Answer(response.status, CIMultiDict(response.headers), body)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [answer for answer in answers if answer is not None]
