"""Build conveyor from settings: the docs service (``build_app``) and the legacy-only app.

The resolver is the JSON API client when ``json_api`` is set, otherwise the own index in
``index`` (or the files edge's primary store); with neither, legacy URLs are 404.
"""

from __future__ import annotations

from pythonhosted.catalog import CatalogWatch
from pythonhosted.config import ConveyorSettings, Settings, load_worker_settings
from pythonhosted.conveyor.app import ConveyorApp
from pythonhosted.conveyor.docs import DocsSite
from pythonhosted.conveyor.legacy import LegacyApp
from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.conveyor.redirects import RedirectTable
from pythonhosted.conveyor.resolver import Resolver
from pythonhosted.conveyor.sources import OwnIndexSource, Source
from pythonhosted.logsetup import configure_logging
from pythonhosted.storage import Timeouts, open_store
from pythonhosted.web.clientfacts import ClientFacts


def docs_url(settings: Settings) -> str:
    """The docs store: as configured, else a directory under the data dir."""
    return settings.conveyor.docs or f"file://{settings.data_dir.absolute()}/docs"


def build_resolver(settings: Settings, metrics: ConveyorMetrics) -> Resolver | None:
    conveyor = settings.conveyor
    source: Source
    if conveyor.json_api:
        if not conveyor.json_api.startswith(("http://", "https://")):
            raise ValueError(f"--json-api must be an http(s) URL, got {conveyor.json_api!r}")
        # Imported here: its HTTP client (aiohttp) is ~0.1 s of CPU to import, paid by every
        # start of `files serve`, `serve` and `conveyor serve` that has no JSON API upstream.
        from pythonhosted.conveyor.jsonapi import JsonApiSource

        source = JsonApiSource(
            conveyor.json_api,
            timeout=conveyor.upstream_timeout,
            default_ttl=conveyor.cache_ttl,
            max_bytes=conveyor.upstream_max_bytes,
            connections=conveyor.upstream_connections,
            metrics=metrics,
        )
    else:
        index = conveyor.index or settings.files.primary
        if not index:
            return None
        store = open_store(index, _timeouts(conveyor))
        source = OwnIndexSource(store, conveyor.files_base_url, conveyor.cache_ttl)
        return Resolver(
            source,
            conveyor.cache_entries,
            conveyor.cache_max_bytes,
            metrics,
            CatalogWatch(store),
        )
    return Resolver(source, conveyor.cache_entries, conveyor.cache_max_bytes, metrics)


def create_legacy_app(resolver: Resolver) -> LegacyApp:
    """The legacy-redirect ASGI app alone, for the files edge to mount.

    Its counters live in ``resolver.metrics.registry``; a lifespan ``shutdown`` sent to it (or
    ``await app.resolver.close()``) closes the JSON API client.
    """
    return LegacyApp(resolver)


def legacy_app_from_settings(settings: Settings) -> LegacyApp | None:
    """The legacy-redirect app the files edge mounts for non-hashed ``/packages/`` paths."""
    resolver = build_resolver(settings, ConveyorMetrics())
    return create_legacy_app(resolver) if resolver is not None else None


def build_app(settings: Settings) -> ConveyorApp:
    """The conveyor service: docs, legacy redirects, ``/_health`` and ``/metrics``."""
    conveyor = settings.conveyor
    metrics = ConveyorMetrics()
    store = open_store(docs_url(settings), _timeouts(conveyor))
    resolver = build_resolver(settings, metrics)
    return ConveyorApp(
        DocsSite(store, RedirectTable(store, metrics, conveyor.redirects_max_bytes)),
        LegacyApp(resolver) if resolver is not None else None,
        metrics,
        conveyor.redirects_reload_interval,
        ClientFacts(trust_proxy_headers=conveyor.trust_proxy_headers),
        settings.http.access_log,
    )


def worker_app() -> ConveyorApp:
    """Entry point of each ``conveyor serve --workers N`` process: settings from the environment.

    Each worker has its own cache and redirect-table reloader, so a cold project costs at most
    one upstream request per worker.
    """
    settings = load_worker_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    return build_app(settings)


def _timeouts(conveyor: ConveyorSettings) -> Timeouts:
    return Timeouts.serving(conveyor.store_connect_timeout, conveyor.store_read_timeout)
