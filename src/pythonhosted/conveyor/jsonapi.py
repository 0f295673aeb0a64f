"""The package JSON API source (Warehouse's ``GET {endpoint}/pypi/{project}/json``).

Freshness follows the upstream's ``Cache-Control`` (``s-maxage`` over ``max-age``, minus
``Age``; ``no-store`` is never kept; ``no-cache`` is kept only to revalidate); an answer
without one stays fresh for the configured default. Expired answers with an ETag are
revalidated with ``If-None-Match``, so a 304 renews them without a body. Client errors
(404, 410…) are repeated to the client and kept only when the upstream gave them a lifetime.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import quote

import aiohttp

from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.conveyor.projectfiles import ProjectFiles
from pythonhosted.conveyor.projectjson import InvalidJson, ProjectFilesReader, parse_project
from pythonhosted.conveyor.sources import Entry, UpstreamUnavailable
from pythonhosted.web.http import delta_seconds

log = logging.getLogger(__name__)

# Answers up to this size are parsed whole (orjson: half the CPU of the event walk); larger
# ones are read into files while they arrive, so a lookup never holds more than this much
# body: 32 concurrent lookups of 11.6 MB answers took conveyor to an 851 MB peak when each
# was held and parsed whole. Chunks stay small so reading one blocks the loop ~2 ms.
WHOLE_PARSE_BYTES = 256 * 1024
BODY_CHUNK = 64 * 1024


def freshness(cache_control: str | None, age: str | None, default: float) -> float | None:
    """Seconds an answer stays fresh; None when it must not be kept at all."""
    if cache_control is None:
        return default
    directives: dict[str, str] = {}
    for item in cache_control.lower().split(","):
        name, _, value = item.strip().partition("=")
        directives[name.strip()] = value.strip().strip('"')
    if "no-store" in directives:
        return None
    if "no-cache" in directives:
        return 0.0
    for name in ("s-maxage", "max-age"):
        seconds = delta_seconds(directives.get(name, ""))
        if seconds is not None:
            already = (delta_seconds(age) if age is not None else None) or 0
            return max(0.0, float(seconds - already))
    return default


class JsonApiSource:
    """An aiohttp client for one JSON API; its session is made on first use, in the serving loop.

    Lazy creation matters because the edge mounts the legacy app without forwarding lifespan
    events, and a session is bound to the event loop it was created in.

    At most ``connections`` lookups talk to the upstream at once; the others wait their turn
    (first come, first served) for up to ``timeout``, and the ``timeout`` of a lookup's
    exchange runs from when it has its turn. It ran from the request before, so waiting for
    one of aiohttp's pooled connections used up the upstream's time: 2,000 concurrent lookups
    of distinct names against an upstream answering each in 1 s got 1,679 503s within 7 s
    while the upstream had been asked only 385 times (64 connections), 64 of its answers
    arriving too late to use; now the 384 lookups sent are all answered and the rest are
    503s that never reached the upstream.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float,
        default_ttl: float,
        max_bytes: int,
        metrics: ConveyorMetrics,
        connections: int = 64,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.default_ttl = default_ttl
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.connections = connections
        self._turns: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections, ttl_dns_cache=60),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    async def fetch(self, project: str, stale: Entry | None) -> Entry:
        url = f"{self.endpoint}/pypi/{quote(project, safe='')}/json"
        turns = self._turns_here()
        try:
            async with asyncio.timeout(self.timeout):
                await turns.acquire()
        except TimeoutError:
            self.metrics.upstream.labels("busy").inc()
            raise UpstreamUnavailable(
                f"{url}: {self.connections} lookups in flight for {self.timeout:g} s"
            ) from None
        try:
            return await self._fetch(url, stale)
        finally:
            turns.release()

    def _turns_here(self) -> asyncio.Semaphore:
        """The turns of the running loop's lookups (a semaphore belongs to one loop, as the
        session does; a source used from a new loop gets new ones)."""
        loop = asyncio.get_running_loop()
        if self._turns is None or self._turns[0] is not loop:
            self._turns = (loop, asyncio.Semaphore(self.connections))
        return self._turns[1]

    async def _fetch(self, url: str, stale: Entry | None) -> Entry:
        headers = {"Accept": "application/json"}
        if stale is not None and stale.etag is not None:
            headers["If-None-Match"] = stale.etag
        try:
            async with self._client().get(url, headers=headers) as response:
                status = response.status
                self.metrics.upstream.labels(str(status)).inc()
                lifetime = freshness(
                    response.headers.get("Cache-Control"),
                    response.headers.get("Age"),
                    self.default_ttl,
                )
                etag = response.headers.get("ETag")
                if status == 304 and stale is not None and stale.files is not None:
                    return Entry(200, stale.files, etag or stale.etag, _until(lifetime))
                if 400 <= status < 500:
                    explicit = response.headers.get("Cache-Control") is not None
                    return Entry(status, None, None, _until(lifetime) if explicit else 0.0)
                if status != 200:
                    raise UpstreamUnavailable(f"{url}: upstream answered {status}")
                files = await self._files(url, response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.upstream.labels("error").inc()
            raise UpstreamUnavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
        except InvalidJson as exc:
            raise UpstreamUnavailable(f"{url}: invalid JSON: {exc}") from exc
        return Entry(200, files, etag if lifetime is not None else None, _until(lifetime))

    async def _files(self, url: str, response: aiohttp.ClientResponse) -> ProjectFiles:
        """The (decompressed) body's files, refused past ``max_bytes`` however it was sent."""
        too_big = UpstreamUnavailable(f"{url}: answer larger than {self.max_bytes} bytes")
        if (response.content_length or 0) > self.max_bytes:
            raise too_big
        body = bytearray()
        reader: ProjectFilesReader | None = None
        size = 0
        async for chunk in response.content.iter_chunked(BODY_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise too_big
            if reader is not None:
                reader.feed(chunk)
                continue
            body += chunk
            if size > WHOLE_PARSE_BYTES:
                reader = ProjectFilesReader()
                reader.feed(bytes(body))
                body = bytearray()
        if reader is None:
            return parse_project(body)
        # Indexing a big project's thousands of files takes tens of ms: off the loop.
        return await asyncio.to_thread(reader.close)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _until(lifetime: float | None) -> float:
    return 0.0 if lifetime is None else time.monotonic() + lifetime
