"""Build the simple index from settings: the catalog in the primary store, the shared log."""

from __future__ import annotations

from pythonhosted.config import Settings
from pythonhosted.eventlog import event_log_from_settings
from pythonhosted.index.app import IndexApp, IndexOptions
from pythonhosted.storage import Timeouts, open_store
from pythonhosted.web.clientfacts import ClientFacts
from pythonhosted.web.shell import Service


def build_app(settings: Settings) -> Service:
    files = settings.files
    if not files.primary:
        raise ValueError("no primary store: pass --primary URL or set PYTHONHOSTED_FILES__PRIMARY")
    store = open_store(
        files.primary, Timeouts.serving(files.primary_connect_timeout, files.primary_read_timeout)
    )
    index = IndexApp(
        store,
        event_log_from_settings(settings, "simple"),
        IndexOptions(
            files_url=settings.index.files_url,
            cache_ttl=settings.index.cache_ttl,
            cache_max_bytes=settings.index.cache_max_bytes,
            client=ClientFacts(files.trust_proxy_headers, files.country_header),
        ),
    )
    return index.service(settings.http.access_log)
