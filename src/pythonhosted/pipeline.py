"""Where the analytics pipeline keeps its things: one home for the layout of the log and
results stores, and for their URLs.

linehaul writes this layout (ingest reads log objects and writes result files, publish loads
them); the warehouse's coverage report and the stats web only read it. It used to live in
linehaul's modules, which made the warehouse import linehaul while linehaul imports the
warehouse; here, below both, each depends on it and neither on the other.

- The log store: batch objects ``*.log.gz`` (the event log's names), ``leases/`` (who is
  ingesting what), ``corrupt/`` (damaged objects moved aside).
- The results store: ``processed/{day}/[part{N}/]{downloads|simple}-{name}.json``, each file
  of rows with its row count in the object's metadata (``rows``); ``unprocessed/`` for lines
  no parser took.
"""

from __future__ import annotations

from pythonhosted.config import Settings
from pythonhosted.storage import Store, Timeouts, open_store

LOG_SUFFIX = ".log.gz"
LEASES = "leases/"
CORRUPT = "corrupt/"
RESULTS = "processed/"
UNPROCESSED = "unprocessed/"
TABLE_OF = {"downloads-": "file_downloads", "simple-": "simple_requests"}
ROWS = "rows"
"""Metadata of a result file of rows: how many it holds (publish's bookkeeping takes it
from there instead of counting, when the warehouse can read the file in place)."""

# Batch jobs read whole objects: allow slow reads and a few retries, unlike the files edge.
BATCH_TIMEOUTS = Timeouts(connect=5.0, read=30.0, retries=3)


def pending(keys: list[str]) -> list[str]:
    """The log objects among a listing of the log store (not yet ingested)."""
    return [
        key for key in keys if key.endswith(LOG_SUFFIX) and not key.startswith((LEASES, CORRUPT))
    ]


def result_name(key: str) -> str:
    """The name results of log object ``key`` carry: its base name without the suffix."""
    return key.rsplit("/", 1)[-1].removesuffix(LOG_SUFFIX)


def result_files(name: str, day: str, part: int) -> tuple[str, str, str]:
    """Where part ``part`` (from 1) of log object ``name``'s results go, for events of ``day``
    (``YYYYMMDD``): its downloads rows, its simple-request rows, its unprocessable lines."""
    folder = "" if part == 1 else f"part{part}/"
    return (
        f"{RESULTS}{day}/{folder}downloads-{name}.json",
        f"{RESULTS}{day}/{folder}simple-{name}.json",
        f"{UNPROCESSED}{day}/{folder}{name}.txt",
    )


def too_long_samples(name: str, day: str) -> str:
    """Where the start of an object's over-long lines goes."""
    return f"{UNPROCESSED}{day}/too-long/{name}.txt"


def table_of(key: str) -> str | None:
    """The table a result file belongs to, from its base name; None for anything else."""
    base = key.rsplit("/", 1)[-1]
    if not base.endswith(".json"):
        return None
    for prefix, table in TABLE_OF.items():
        if base.startswith(prefix):
            return table
    return None


def warehouse_url(settings: Settings) -> str:
    """The configured warehouse, else the embedded DuckDB file under the data dir."""
    default = f"duckdb://{settings.data_dir.absolute()}/warehouse.duckdb"
    return settings.linehaul.warehouse or default


def pipeline_urls(settings: Settings) -> tuple[str, str, str]:
    """(logs, results, warehouse) URLs: the configured ones, else defaults under data_dir."""
    data = settings.data_dir.absolute()
    section = settings.linehaul
    logs = section.logs or settings.files.logs or f"file://{data}/logs"
    results = section.results or f"file://{data}/results"
    return logs, results, warehouse_url(settings)


def pipeline_stores(settings: Settings) -> tuple[Store, Store, str]:
    """The log and results stores, opened, and the warehouse URL."""
    logs, results, warehouse = pipeline_urls(settings)
    return open_store(logs, BATCH_TIMEOUTS), open_store(results, BATCH_TIMEOUTS), warehouse
