"""The camo ASGI app: health, metrics, and the proxy for everything else.

``create_app`` is what the CLI serves and what the all-in-one server mounts. The upstream
client is created on first use inside the serving event loop (its pooled connections belong to
that loop) and closed on lifespan shutdown.
"""

from __future__ import annotations

from pythonhosted.camo.headers import security_headers
from pythonhosted.camo.metrics import CamoMetrics
from pythonhosted.camo.policy import AddressPolicy
from pythonhosted.camo.proxy import Proxy, ProxyOptions
from pythonhosted.camo.resolver import Lookup, system_lookup
from pythonhosted.camo.rules import Rules
from pythonhosted.camo.upstream import Upstream, UrlChecks
from pythonhosted.config import CamoSettings, load_worker_settings
from pythonhosted.logsetup import configure_logging
from pythonhosted.web.lifespan import handle_lifespan
from pythonhosted.web.responses import send_metrics, send_text
from pythonhosted.web.types import Receive, Scope, Send

HEALTH_PATHS = frozenset({"/healthcheck", "/_health"})


class CamoApp:
    def __init__(self, settings: CamoSettings, lookup: Lookup) -> None:
        self.metrics = CamoMetrics()
        self._settings = settings
        self._lookup = lookup
        self._checks = UrlChecks(
            AddressPolicy.allowing(settings.allow_networks),
            Rules.load(settings.filter_ruleset),
            settings.allow_credential_urls,
        )
        self._always = security_headers(settings.server_name, settings.headers)
        media = (
            ("image/",) + ("video/",) * settings.allow_video + ("audio/",) * settings.allow_audio
        )
        options = ProxyOptions(
            key=settings.hmac_key(),
            max_bytes=settings.max_size_kb * 1024,
            timeout=settings.timeout,
            media_prefixes=tuple(media),
            user_agent=settings.user_agent,
            via=f"1.1 {settings.server_name}",
            always_headers=self._always,
        )
        self._upstream: Upstream | None = None
        self._proxy = Proxy(options, self.upstream, self.metrics)

    def upstream(self) -> Upstream:
        if self._upstream is None:
            self._upstream = Upstream(
                self._checks,
                max_redirects=self._settings.max_redirects,
                connect_timeout=self._settings.timeout,
                lookup=self._lookup,
            )
        return self._upstream

    async def aclose(self) -> None:
        if self._upstream is not None:
            upstream, self._upstream = self._upstream, None
            await upstream.close()

    async def _startup(self) -> None:
        self.upstream()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send, self._startup, self.aclose)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path in HEALTH_PATHS:
            await send_text(send, 200, "OK", headers=self._always, head=scope["method"] == "HEAD")
        elif path == "/metrics":
            await send_metrics(send, self.metrics.registry, headers=self._always)
        else:
            await self._proxy(scope, send)


def create_app(settings: CamoSettings, *, lookup: Lookup = system_lookup) -> CamoApp:
    """The camo ASGI app for ``settings``; ValueError if there is no key.

    ``lookup`` is the name-resolution seam: tests pass a stub resolver mapping test names to
    loopback addresses; production uses the system resolver.
    """
    return CamoApp(settings, lookup)


def worker_app() -> CamoApp:
    """Entry point of each ``camo serve --workers N`` process: settings from the environment.

    Each worker has its own upstream connection pool, caches and metrics.
    """
    settings = load_worker_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    return create_app(settings.camo)
