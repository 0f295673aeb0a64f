"""Build the files edge from settings: stores with their timeouts, the download log, options."""

from __future__ import annotations

import logging

from pydantic import SecretStr

from pythonhosted.config import Settings, load_worker_settings
from pythonhosted.eventlog import EventLog, event_log_from_settings
from pythonhosted.files.app import METHODS, EdgeOptions, FilesEdge
from pythonhosted.files.metrics import EdgeMetrics
from pythonhosted.localdirs import load_or_create_secret, read_secret
from pythonhosted.logsetup import configure_logging
from pythonhosted.storage import StorePair, Timeouts, open_store
from pythonhosted.web.purges import worker_journal
from pythonhosted.web.security import NO_CROSS_DOMAIN
from pythonhosted.web.shell import Service
from pythonhosted.web.types import ASGIApp

log = logging.getLogger(__name__)


def build_edge(settings: Settings, legacy: ASGIApp | None = None) -> Service:
    """The edge as an ASGI app: its request logic in the service shell."""
    edge = edge_from_settings(settings, legacy)
    return Service(
        "files",
        edge.handle,
        edge.metrics.registry,
        client=edge.client,
        extra_headers=[NO_CROSS_DOMAIN],
        methods=METHODS,
        allow="GET, HEAD, OPTIONS",
        hooks=[EventLog.lifespan(edge.log)],  # ships in the background, flushes at stop
        access_log=settings.http.access_log,
        quick=edge.quick,
    )


def edge_from_settings(settings: Settings, legacy: ASGIApp | None = None) -> FilesEdge:
    files = settings.files
    if not files.primary:
        raise ValueError("no primary store: pass --primary URL or set PYTHONHOSTED_FILES__PRIMARY")
    # The archive is the primary's retry; with none, a quick failure is tried once more.
    bounds = Timeouts if files.archive else Timeouts.serving
    primary = open_store(
        files.primary, bounds(files.primary_connect_timeout, files.primary_read_timeout)
    )
    archive = (
        open_store(
            files.archive,
            Timeouts(files.archive_connect_timeout, files.archive_read_timeout, retries=2),
        )
        if files.archive
        else None
    )
    metrics = EdgeMetrics()
    return FilesEdge(
        StorePair(primary, archive),
        download_log=event_log_from_settings(
            settings, "downloads", metrics.log_lines_shipped.inc, metrics.log_failed
        ),
        options=EdgeOptions(
            admin_secret=_secret(files.admin_secret),
            purge_secret=purge_secret(settings, create=True),
            require_tls=files.require_tls,
            trust_proxy_headers=files.trust_proxy_headers,
            country_header=files.country_header,
            cache_entries=files.cache_entries,
            cache_max_bytes=files.cache_max_bytes,
            cache_object_max_bytes=files.cache_object_max_bytes,
        ),
        legacy=legacy,
        metrics=metrics,
        purges=worker_journal("files"),
    )


PURGE_SECRET_FILE = "purge.key"


def purge_secret(settings: Settings, create: bool = False) -> str | None:
    """``files.purge_secret``, else the one kept in ``DATA/purge.key``: generated there by the
    first edge that starts without one (``create``), found there by ``files delete``.

    An edge whose data dir cannot be written runs on, refusing every purge (as it did before
    secrets were generated), and says so in its log.
    """
    configured = _secret(settings.files.purge_secret)
    if configured:
        return configured
    path = settings.data_dir / PURGE_SECRET_FILE
    if not create:
        return read_secret(path)
    try:
        return load_or_create_secret(path)
    except OSError as exc:
        log.warning("purges refused: no files.purge_secret and %s: %s", path, exc.strerror)
        return None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_app(settings: Settings) -> Service:
    """The edge as ``files serve`` runs it: legacy ``/packages/`` URLs go to conveyor's
    redirect logic (its public factory), resolved from the upload catalog by default."""
    from pythonhosted.conveyor.service import legacy_app_from_settings

    return build_edge(settings, legacy=legacy_app_from_settings(settings))


def worker_app() -> Service:
    """Entry point of each ``files serve --workers N`` process: settings from the environment."""
    settings = load_worker_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    return build_app(settings)
