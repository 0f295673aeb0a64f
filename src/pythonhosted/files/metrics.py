"""The files edge's Prometheus metrics (one registry per app instance).

The counters every request touches (responses by status and body bytes, kept by the service
shell, and downloads, kept here) are plain integers, turned into Prometheus counters when
``/metrics`` is scraped: an increment is then an attribute update rather than a labelled
child's lock round trip, which mattered at tens of thousands of requests per second. Only the
event loop increments them; readers (a scrape, the snapshot thread under ``--workers``) take
copies, so they need no lock.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from pythonhosted.web.metrics import ServiceRegistry


class _Downloads(Collector):
    def __init__(self) -> None:
        self.count = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "files_downloads", "Distribution downloads logged.", value=self.count
        )


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = ServiceRegistry("files")
        self.downloads = _Downloads()  # responses and bytes are the service shell's
        self.registry.register(self.downloads)
        self.fallbacks = Counter(
            "files_archive_fallbacks",
            "Reads that went to the archive store, by why and how they ended.",
            ["reason", "outcome"],
            registry=self.registry,
        )
        self.sidecars = Counter(
            "files_sidecars_served",
            "Non-distribution files served (not downloads): .metadata, .asc, other.",
            ["kind"],
            registry=self.registry,
        )
        self.log_lines_shipped = Counter(
            "files_log_lines_shipped",
            "Download log lines stored in the log store.",
            registry=self.registry,
        )
        self.log_lines_dropped = Counter(
            "files_log_lines_dropped",
            "Download log lines dropped: the oldest held in memory past the bound while the spool "
            "refused lines.",
            registry=self.registry,
        )
        self.log_ship_failures = Counter(
            "files_log_ship_failures",
            "Batches that failed to reach the log store (kept in the spool for retry).",
            registry=self.registry,
        )
        self.purges = Counter("files_purges", "Successful PURGE requests.", registry=self.registry)
        self.cache_entries = Gauge(
            "files_cache_entries",
            "Entries in the edge's caches: located objects, and cached bodies and ranges.",
            ["cache"],
            registry=self.registry,
        )
        self.primary_skipped = Gauge(
            "files_primary_skipped",
            "1 while lookups ask the archive first, the primary store having failed some in "
            "a row (it is asked for what the archive lacks, and tried first every few seconds).",
            registry=self.registry,
        )
        self.cache_bytes = Gauge(
            "files_cache_bytes",
            "Bytes the body cache holds, with each entry's bookkeeping.",
            registry=self.registry,
        )

    def log_failed(self, lines: int) -> None:
        if lines:
            self.log_lines_dropped.inc(lines)
        else:
            self.log_ship_failures.inc()
