"""camo's Prometheus metrics (spec rule 15), in a registry of their own per app.

Names follow go-camo's so existing dashboards keep working. Failure reasons are short fixed
codes (see :class:`~pythonhosted.camo.errors.Refused`), never URLs, to keep cardinality bounded.

What every response counts (its status, its duration and size, a cache result and the bytes
served from the cache) is kept in plain ints and turned into Prometheus families at scrape
time, as the service shell counts: prometheus_client's lock per increment and per histogram
observation cost a cache hit 4-5 us of its ~22 us of Python (measured by calling the app
directly, 20,000 hits).
"""

from __future__ import annotations

import bisect
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import Counter, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from pythonhosted.web.metrics import ServiceRegistry

# prometheus_client's default buckets, for the duration
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

SIZE_BUCKETS = tuple(float(1 << n) for n in range(10, 24, 2))  # 1 KiB .. 4 MiB


class IntHistogram:
    """A histogram's counts per bucket (the last one +Inf) and its sum, without a lock: only
    the event loop's thread observes, and a scrape copies the list in one step."""

    __slots__ = ("bounds", "counts", "name", "text", "total")

    def __init__(self, name: str, text: str, bounds: tuple[float, ...]) -> None:
        self.name, self.text, self.bounds = name, text, bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self) -> HistogramMetricFamily:
        counts, cumulative, buckets = list(self.counts), 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(self.name, self.text, buckets=buckets, sum_value=self.total)


class ResponseCounts(Collector):
    """The per-response counts, as ints (see the module's docstring)."""

    def __init__(self) -> None:
        self.by_status: Tally[int] = Tally()
        self.by_cache_result: Tally[str] = Tally()
        self.cache_bytes_served = 0
        self.duration = IntHistogram(
            "camo_response_duration_seconds",
            "Time from request to the last byte of the proxied response",
            DURATION_BUCKETS,
        )
        self.size = IntHistogram(
            "camo_response_size_bytes", "Body bytes relayed per proxied response", SIZE_BUCKETS
        )

    def collect(self) -> Iterator[Metric]:
        yield self.duration.family()
        yield self.size.family()
        responses = CounterMetricFamily(
            "camo_responses", "Responses to proxy requests by status", labels=["code"]
        )
        for status, count in sorted(dict(self.by_status).items()):
            responses.add_metric([str(status)], count)
        yield responses
        results = CounterMetricFamily(
            "camo_cache_responses",
            "Requests the cache answered, by result: hit, miss, revalidated (upstream 304), "
            "stale (served while upstream failed), coalesced (waited for another request's "
            "fetch), bypass (HEAD with nothing cached)",
            labels=["result"],
        )
        for result, count in sorted(dict(self.by_cache_result).items()):
            results.add_metric([result], count)
        yield results
        yield CounterMetricFamily(
            "camo_cache_served_bytes",
            "Body bytes answered from the cache",
            value=self.cache_bytes_served,
        )


class CamoMetrics:
    def __init__(self) -> None:
        self.registry = ServiceRegistry("camo")
        self.counts = ResponseCounts()
        self.registry.register(self.counts)
        self.duration = self.counts.duration
        self.size = self.counts.size
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
        self.cache_stores = Counter(
            "camo_cache_stores", "Images put in the cache", registry=self.registry
        )
        self.cache_purges = Counter(
            "camo_cache_purges", "Accepted PURGE requests", registry=self.registry
        )
        self.cache_write_failures = Counter(
            "camo_cache_write_failures",
            "Images relayed uncached because the cache's disk refused them (full, no descriptors)",
            registry=self.registry,
        )
        self.cache_damaged = Counter(
            "camo_cache_damaged",
            "Disk entries found incomplete or damaged and dropped",
            registry=self.registry,
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

    def response(self, status: int) -> None:
        self.counts.by_status[status] += 1
