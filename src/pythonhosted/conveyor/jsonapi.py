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
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.conveyor.projectfiles import LegacyFile, ProjectFiles
from pythonhosted.conveyor.sources import Entry, UpstreamUnavailable
from pythonhosted.conveyor.targets import InvalidTarget, check_target
from pythonhosted.web.http import delta_seconds

log = logging.getLogger(__name__)

# Parsing a big project's JSON (thousands of files) takes milliseconds: keep it off the loop.
THREAD_PARSE_BYTES = 256 * 1024
BODY_CHUNK = 256 * 1024


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


def parse_project(body: bytes | bytearray) -> ProjectFiles:
    """Every well-formed file of every release (and ``urls``); malformed entries are skipped.

    A file's ``url`` becomes a ``Location`` header, so one that is not a plain absolute
    http(s) URL (:func:`check_target`) makes its entry malformed too.
    """
    data = orjson.loads(body)
    groups: list[Any] = []
    if isinstance(data, dict):
        releases = data.get("releases")
        if isinstance(releases, dict):
            groups.extend(releases.values())
        groups.append(data.get("urls"))
    return ProjectFiles(
        LegacyFile(item["filename"], item["python_version"], item["url"], bool(item.get("has_sig")))
        for group in groups
        if isinstance(group, list)
        for item in group
        if isinstance(item, dict)
        and isinstance(item.get("filename"), str)
        and isinstance(item.get("python_version"), str)
        and isinstance(item.get("url"), str)
        and _sendable(item["url"])
    )


def _sendable(url: str) -> bool:
    try:
        check_target(url)
    except InvalidTarget:
        return False
    return True


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
                body = await self._body(url, response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.upstream.labels("error").inc()
            raise UpstreamUnavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
        try:
            if len(body) > THREAD_PARSE_BYTES:
                files = await asyncio.to_thread(parse_project, body)
            else:
                files = parse_project(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamUnavailable(f"{url}: invalid JSON: {exc}") from exc
        return Entry(200, files, etag if lifetime is not None else None, _until(lifetime))

    async def _body(self, url: str, response: aiohttp.ClientResponse) -> bytearray:
        """The (decompressed) body, refused past ``max_bytes`` however it was sent."""
        too_big = UpstreamUnavailable(f"{url}: answer larger than {self.max_bytes} bytes")
        if (response.content_length or 0) > self.max_bytes:
            raise too_big
        body = bytearray()
        async for chunk in response.content.iter_chunked(BODY_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                raise too_big
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _until(lifetime: float | None) -> float:
    return 0.0 if lifetime is None else time.monotonic() + lifetime
