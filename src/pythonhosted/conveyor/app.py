"""The conveyor service as one ASGI app: health, metrics, legacy redirects, docs.

Lifespan starts the redirect-table reloader (after a first load, so the table is in service
before the first request) and closes the JSON API client at shutdown.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from pythonhosted.conveyor.docs import DocsSite
from pythonhosted.conveyor.legacy import LegacyApp
from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.conveyor.replies import reply, security_headers
from pythonhosted.web.client import ClientFacts
from pythonhosted.web.lifespan import handle_lifespan
from pythonhosted.web.responses import send_metrics
from pythonhosted.web.types import Message, Receive, Scope, Send

log = logging.getLogger(__name__)

HEALTH = frozenset({"/_health", "/_health/"})


class ConveyorApp:
    def __init__(
        self,
        docs: DocsSite,
        legacy: LegacyApp | None,
        metrics: ConveyorMetrics,
        reload_interval: float,
        client: ClientFacts | None = None,
    ) -> None:
        self.docs = docs
        self.client = client or ClientFacts()
        self.legacy = legacy
        self.metrics = metrics
        self.reload_interval = reload_interval
        self._stop = asyncio.Event()
        self._reloader: asyncio.Task[None] | None = None
        self._counters: dict[tuple[str, int], Counter] = {}  # labels() is slow on the hot path

    async def startup(self) -> None:
        await self.docs.redirects.reload()
        self._stop.clear()
        self._reloader = asyncio.create_task(
            self.docs.redirects.run(self._stop, self.reload_interval)
        )

    async def shutdown(self) -> None:
        if self._reloader is not None:
            self._stop.set()
            await self._reloader
            self._reloader = None
        if self.legacy is not None:
            await self.legacy.resolver.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send, self.startup, self.shutdown)
            return
        if scope["type"] != "http":
            return
        if scope.get("scheme") != "https" and self.client.is_tls(scope, dict(scope["headers"])):
            scope = {**scope, "scheme": "https"}  # TLS ended at a trusted proxy: HSTS applies
        path: str = scope["path"]
        part = "docs"
        watched = _Watched(send)
        send = watched
        try:
            if path in HEALTH:
                part, status = "other", 200
                await reply(send, scope, 200, "OK")
            elif path == "/metrics":
                part, status = "other", 200
                await send_metrics(send, self.metrics.registry, security_headers(scope))
            elif path == "/packages" or path.startswith("/packages/"):
                part = "legacy"
                if self.legacy is None:
                    status = 404
                    await reply(send, scope, 404, "Legacy redirects are not configured")
                else:
                    status = await self.legacy.answer(scope, send)
            else:
                status = await self.docs.answer(scope, send)
        except Exception:
            log.exception("unhandled error for %s %s", scope["method"], path)
            status = 500
            if watched.started:
                raise  # headers are out: cutting the connection short is all that is left
            await reply(send, scope, 500, "Internal error")
        counter = self._counters.get((part, status))
        if counter is None:
            counter = self._counters[part, status] = self.metrics.requests.labels(part, str(status))
        counter.inc()


class _Watched:
    """``send`` that remembers whether the response has started."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = True
        await self.send(message)
