"""Build the files edge from settings: stores with their timeouts, the download log, options."""

from __future__ import annotations

from pydantic import SecretStr

from pythonhosted.config import FilesSettings, Settings, load_settings
from pythonhosted.eventlog import EventLog, EventLogConfig
from pythonhosted.files.app import EdgeOptions, FilesEdge
from pythonhosted.files.metrics import EdgeMetrics
from pythonhosted.logsetup import configure_logging
from pythonhosted.storage import StorePair, Timeouts, open_store
from pythonhosted.web.types import ASGIApp


def build_edge(settings: Settings, legacy: ASGIApp | None = None) -> FilesEdge:
    files = settings.files
    if not files.primary:
        raise ValueError("no primary store: pass --primary URL or set PYTHONHOSTED_FILES__PRIMARY")
    primary = open_store(
        files.primary, Timeouts(files.primary_connect_timeout, files.primary_read_timeout)
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
        download_log=_download_log(settings, files, metrics),
        options=EdgeOptions(
            admin_secret=_secret(files.admin_secret),
            purge_secret=_secret(files.purge_secret),
            require_tls=files.require_tls,
            trust_proxy_headers=files.trust_proxy_headers,
            country_header=files.country_header,
            cache_max_bytes=files.cache_max_bytes,
            cache_object_max_bytes=files.cache_object_max_bytes,
        ),
        legacy=legacy,
        metrics=metrics,
    )


def _download_log(
    settings: Settings, files: FilesSettings, metrics: EdgeMetrics
) -> EventLog | None:
    if not files.logs:
        return None
    spool = files.log_spool_dir or settings.data_dir / "spool" / "downloads"
    return EventLog(
        open_store(files.logs, Timeouts(5.0, 30.0, retries=3)),
        EventLogConfig(
            prefix="downloads",
            spool_dir=spool,
            period=files.log_period,
            batch_lines=files.log_batch_lines,
            compress_level=files.log_compress_level,
            sync_interval=files.log_spool_sync_interval,
        ),
        on_shipped=metrics.log_lines_shipped.inc,
        on_failed=metrics.log_failed,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def worker_app() -> FilesEdge:
    """Entry point of each ``files serve --workers N`` process: settings from the environment."""
    settings = load_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    return build_edge(settings)
