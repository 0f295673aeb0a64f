"""camo's Prometheus metrics (spec rule 15), in a registry of their own per app.

Names follow go-camo's so existing dashboards keep working. Failure reasons are short fixed
codes (see :class:`~pythonhosted.camo.errors.Refused`), never URLs, to keep cardinality bounded.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from pythonhosted.web.metrics import ServiceRegistry

SIZE_BUCKETS = tuple(float(1 << n) for n in range(10, 24, 2))  # 1 KiB .. 4 MiB


class CamoMetrics:
    def __init__(self) -> None:
        self.registry = ServiceRegistry("camo")
        self.duration = Histogram(
            "camo_response_duration_seconds",
            "Time from request to the last byte of the proxied response",
            registry=self.registry,
        )
        self.size = Histogram(
            "camo_response_size_bytes",
            "Body bytes relayed per proxied response",
            buckets=SIZE_BUCKETS,
            registry=self.registry,
        )
        self.responses = Counter(
            "camo_responses",
            "Responses to proxy requests by status",
            ["code"],
            registry=self.registry,
        )
        self.content_length_exceeded = Counter(
            "camo_content_length_exceeded",
            "Upstream responses refused for a Content-Length over the size limit",
            registry=self.registry,
        )
        self.truncated = Counter(
            "camo_responses_truncated",
            "Bodies cut off mid-stream for growing past the size limit",
            registry=self.registry,
        )
        self.failed = Counter(
            "camo_responses_failed",
            "Proxy requests refused or failed, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.memo_entries = Gauge(
            "camo_memo_entries",
            "Entries held by each bounded per-worker memo (verified and checked URLs, DNS "
            "answers, idle upstream connections)",
            ["memo"],
            registry=self.registry,
        )
        self.cache_responses = Counter(
            "camo_cache_responses",
            "Requests the cache answered, by result: hit, miss, revalidated (upstream 304), "
            "stale (served while upstream failed), coalesced (waited for another request's "
            "fetch), bypass (HEAD with nothing cached)",
            ["result"],
            registry=self.registry,
        )
        self.cache_stores = Counter(
            "camo_cache_stores", "Images put in the cache", registry=self.registry
        )
        self.cache_purges = Counter(
            "camo_cache_purges", "Accepted PURGE requests", registry=self.registry
        )
        self.cache_damaged = Counter(
            "camo_cache_damaged",
            "Disk entries found incomplete or damaged and dropped",
            registry=self.registry,
        )
        self.cache_bytes_served = Counter(
            "camo_cache_served_bytes", "Body bytes answered from the cache", registry=self.registry
        )
        self.cache_bytes = Gauge(
            "camo_cache_bytes", "Bytes held by the cache, by tier", ["tier"], registry=self.registry
        )
        self.cache_entries = Gauge(
            "camo_cache_entries",
            "Images held by the cache, by tier",
            ["tier"],
            registry=self.registry,
        )
        self._by_status: dict[int, Counter] = {}

    def response(self, status: int) -> None:
        """Count one response; the labelled child is looked up once per status, not per call."""
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.responses.labels(str(status))
        child.inc()
