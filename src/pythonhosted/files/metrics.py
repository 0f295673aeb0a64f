"""The files edge's Prometheus metrics (one registry per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "files_requests", "Responses by HTTP status.", ["status"], registry=self.registry
        )
        self.bytes_sent = Counter(
            "files_bytes_sent", "Body bytes sent to clients.", registry=self.registry
        )
        self.fallbacks = Counter(
            "files_archive_fallbacks",
            "Reads that went to the archive store, by why and how they ended.",
            ["reason", "outcome"],
            registry=self.registry,
        )
        self.downloads = Counter(
            "files_downloads", "Distribution downloads logged.", registry=self.registry
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
            "Download log lines that could not be spooled.",
            registry=self.registry,
        )
        self.log_ship_failures = Counter(
            "files_log_ship_failures",
            "Batches that failed to reach the log store (kept in the spool for retry).",
            registry=self.registry,
        )
        self.purges = Counter("files_purges", "Successful PURGE requests.", registry=self.registry)

    def log_failed(self, lines: int) -> None:
        if lines:
            self.log_lines_dropped.inc(lines)
        else:
            self.log_ship_failures.inc()
