"""The stores linehaul works on, from settings, with embedded defaults under the data dir."""

from __future__ import annotations

from pythonhosted.config import Settings
from pythonhosted.storage import Store, Timeouts, open_store
from pythonhosted.warehouse import warehouse_url

# Batch jobs read whole objects: allow slow reads and a few retries, unlike the files edge.
BATCH_TIMEOUTS = Timeouts(connect=5.0, read=30.0, retries=3)


def linehaul_urls(settings: Settings) -> tuple[str, str, str]:
    """(logs, results, warehouse) URLs: the configured ones, else defaults under data_dir."""
    data = settings.data_dir.absolute()
    section = settings.linehaul
    logs = section.logs or settings.files.logs or f"file://{data}/logs"
    results = section.results or f"file://{data}/results"
    return logs, results, warehouse_url(settings)


def linehaul_stores(settings: Settings) -> tuple[Store, Store, str]:
    """The log and results stores, opened, and the warehouse URL."""
    logs, results, warehouse = linehaul_urls(settings)
    return open_store(logs, BATCH_TIMEOUTS), open_store(results, BATCH_TIMEOUTS), warehouse
