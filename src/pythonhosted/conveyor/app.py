"""The conveyor service as one ASGI app on the service shell: legacy redirects and docs.

Lifespan starts the redirect-table reloader (after a first load, so the table is in service
before the first request) and closes the JSON API client at shutdown.
"""

from __future__ import annotations

import asyncio

from pythonhosted.conveyor.docs import DocsSite
from pythonhosted.conveyor.legacy import LegacyApp
from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.conveyor.replies import reply
from pythonhosted.web.clientfacts import ClientFacts
from pythonhosted.web.request import Request
from pythonhosted.web.security import NO_CROSS_DOMAIN
from pythonhosted.web.shell import Service
from pythonhosted.web.types import Receive, Send


class ConveyorApp(Service):
    def __init__(
        self,
        docs: DocsSite,
        legacy: LegacyApp | None,
        metrics: ConveyorMetrics,
        reload_interval: float,
        client: ClientFacts | None = None,
        access_log: bool = False,
    ) -> None:
        self.docs = docs
        self.legacy = legacy
        self.metrics = metrics
        self.reload_interval = reload_interval
        self._stop = asyncio.Event()
        self._reloader: asyncio.Task[None] | None = None
        super().__init__(
            "conveyor",
            self._route,
            metrics.registry,
            client=client,
            extra_headers=[NO_CROSS_DOMAIN],
            methods=("GET", "HEAD"),
            health_aliases=("/_health/",),
            hooks=[(self.startup, self.shutdown)],
            part=_part,
            tallies=metrics.tallies,
            access_log=access_log,
        )

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

    async def _route(self, request: Request, receive: Receive, send: Send) -> None:
        if request.tls and request.scope.get("scheme") != "https":
            # TLS ended at a trusted proxy: HSTS and https redirects apply.
            request.scope = {**request.scope, "scheme": "https"}
        if _part(request.path) == "legacy":
            if self.legacy is None:
                await reply(send, request.scope, 404, "Legacy redirects are not configured")
            else:
                await self.legacy.answer(request.scope, send)
        else:
            await self.docs.answer(request, send)


def _part(path: str) -> str:
    if path == "/packages" or path.startswith("/packages/"):
        return "legacy"
    if path in ("/_health", "/_health/", "/metrics"):
        return "other"
    return "docs"
