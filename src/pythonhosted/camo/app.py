"""The camo ASGI app: health, metrics, and the proxy for everything else.

``create_app`` is what the CLI serves and what the all-in-one server mounts. The upstream
client is created on first use inside the serving event loop (its pooled connections belong to
that loop) and closed on lifespan shutdown.
"""

from __future__ import annotations

import functools

from pythonhosted import __version__
from pythonhosted.camo.cache.disk import DiskTier
from pythonhosted.camo.cache.layer import CachePolicy, ImageCache
from pythonhosted.camo.cache.store import CacheStore
from pythonhosted.camo.dns import Lookup, system_lookup
from pythonhosted.camo.headers import security_headers
from pythonhosted.camo.http1 import Dial, open_connection
from pythonhosted.camo.metrics import CamoMetrics
from pythonhosted.camo.policy import AddressPolicy
from pythonhosted.camo.proxy import Proxy, ProxyOptions
from pythonhosted.camo.rules import Rules
from pythonhosted.camo.upstream import Upstream, UrlChecks
from pythonhosted.config import CamoSettings
from pythonhosted.web.purges import worker_journal
from pythonhosted.web.request import Request
from pythonhosted.web.shell import Service
from pythonhosted.web.types import Receive, Send


class CamoApp(Service):
    """The proxy in the service shell: ``/_health`` (and go-camo's ``/healthcheck``),
    ``/metrics`` unless turned off, camo's headers on every answer, errors counted."""

    def __init__(
        self, settings: CamoSettings, lookup: Lookup, dial: Dial, access_log: bool = False
    ) -> None:
        self.metrics = CamoMetrics()
        self._settings = settings
        self._lookup = lookup
        self._dial = dial
        self._checks = UrlChecks(
            AddressPolicy.allowing(settings.allow_networks),
            Rules.load(settings.filter_ruleset),
            settings.allow_credential_urls,
        )
        server = settings.server_name
        if settings.expose_server_version:
            server = f"{server} {__version__}"
        self._always = security_headers(
            server, settings.headers, close_connections=settings.disable_keepalives_frontend
        )
        media = {"image"}
        if settings.allow_video:
            media.add("video")
        if settings.allow_audio:
            media.add("audio")
        options = ProxyOptions(
            key=settings.hmac_key(),
            max_bytes=settings.max_size_kb * 1024 or None,
            timeout=settings.timeout,
            media_types=frozenset(media),
            user_agent=settings.user_agent,
            server_name=settings.server_name,
            always_headers=self._always,
            max_size_redirect=settings.max_size_redirect,
            forwarded_for=settings.enable_xfwd4,
            purge_secret=(
                None
                if settings.cache_purge_secret is None
                else settings.cache_purge_secret.get_secret_value().encode()
            ),
        )
        self._upstream: Upstream | None = None
        self.cache = _image_cache(settings, self.metrics)
        self._proxy = Proxy(options, self.upstream, self.metrics, self.cache)
        entries = self.metrics.memo_entries
        entries.labels("verified_urls").set_function(lambda: self._proxy.verified)
        for memo in ("checked_urls", "dns", "idle_connections"):
            entries.labels(memo).set_function(functools.partial(self._upstream_memo, memo))
        super().__init__(
            "camo",
            self._handle,
            self.metrics.registry,
            security=self._always,
            health_aliases=("/healthcheck",),
            hooks=[(self._startup, self.aclose)],
            metrics=settings.metrics,
            access_log=access_log,
            relief=True,  # a herd of clients of one image must not leave the process 2x its size
            quick=self._proxy.quick if self._proxy.answers_quickly else None,
        )

    def _upstream_memo(self, memo: str) -> int:
        return 0 if self._upstream is None else self._upstream.memo_entries()[memo]

    def upstream(self) -> Upstream:
        if self._upstream is None:
            self._upstream = Upstream(
                self._checks,
                max_redirects=self._settings.max_redirects,
                connect_timeout=self._settings.timeout,
                lookup=self._lookup,
                dial=self._dial,
                keep_alive=not self._settings.disable_keepalives_backend,
            )
        return self._upstream

    async def aclose(self) -> None:
        if self._upstream is not None:
            upstream, self._upstream = self._upstream, None
            await upstream.close()
        if self.cache is not None:
            self.cache.store.disk.close()

    async def _startup(self) -> None:
        self.upstream()
        if self.cache is not None:
            # claims a disk slot and indexes it: serving waits for that, up to INDEX_WAIT
            await self.cache.available()

    async def _handle(self, request: Request, receive: Receive, send: Send) -> None:
        # the proxy answers its own errors, with camo's headers
        await self._proxy(request.scope, receive, send, request.headers)


def _image_cache(settings: CamoSettings, metrics: CamoMetrics) -> ImageCache | None:
    """The cache in front, if configured; its disk tier claims its slot at start-up."""
    if settings.cache_dir is None or settings.cache_max_bytes == 0:
        return None
    disk = DiskTier(settings.cache_dir, settings.cache_max_bytes, settings.workers)
    store = CacheStore(disk, settings.cache_memory_bytes, settings.cache_memory_object_bytes)
    object_max = settings.cache_object_max_bytes
    if settings.max_size_kb:
        object_max = min(object_max, settings.max_size_kb * 1024)
    policy = CachePolicy(
        default_ttl=settings.cache_default_ttl,
        max_ttl=settings.cache_max_ttl,
        stale_if_error=settings.cache_stale_if_error,
        object_max_bytes=object_max,
    )
    metrics.cache_bytes.labels("memory").set_function(lambda: store.memory_bytes)
    metrics.cache_bytes.labels("disk").set_function(lambda: disk.bytes)
    metrics.cache_entries.labels("memory").set_function(lambda: len(store.memory))
    metrics.cache_entries.labels("disk").set_function(lambda: len(disk))
    return ImageCache(store, policy, metrics, worker_journal("camo"))


def create_app(
    settings: CamoSettings,
    *,
    lookup: Lookup = system_lookup,
    dial: Dial = open_connection,
    access_log: bool = False,
) -> CamoApp:
    """The camo ASGI app for ``settings``; ValueError if there is no key.

    ``lookup`` and ``dial`` are the network seams: tests pass a stub resolver mapping test
    names to loopback addresses and a dialler that refuses anything off loopback, so no test
    can reach the internet whatever URL it throws at camo; production uses the system's.
    ``access_log`` is ``http.access_log``, which lives outside camo's own settings.
    """
    return CamoApp(settings, lookup, dial, access_log)
