"""Conveyor's Prometheus metrics (one registry per app instance, so tests never share counts)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from pythonhosted.web.metrics import ServiceRegistry
from pythonhosted.web.shell import ResponseTallies


class ConveyorMetrics:
    def __init__(self) -> None:
        self.registry = ServiceRegistry("conveyor")
        # Responses by part (legacy, docs, other) and status: the service shell counts them,
        # and the legacy app counts here too when the files edge mounts it.
        self.tallies = ResponseTallies("conveyor", parts=True)
        self.registry.register(self.tallies)
        self.upstream = Counter(
            "conveyor_upstream_requests",
            "Package JSON API requests by outcome (HTTP status, or 'error').",
            ["outcome"],
            registry=self.registry,
        )
        self.cache = Counter(
            "conveyor_cache_lookups",
            "Project lookups: hit (fresh entry), miss (fetched), coalesced (joined a fetch).",
            ["result"],
            registry=self.registry,
        )
        self.cache_entries = Gauge(
            "conveyor_cache_entries", "Projects held in the lookup cache.", registry=self.registry
        )
        self.cache_bytes = Gauge(
            "conveyor_cache_bytes",
            "Estimated memory of the lookup cache (bounded by cache_max_bytes).",
            registry=self.registry,
        )
        self.redirect_reloads = Counter(
            "conveyor_redirect_table_reloads",
            "redirects.txt versions parsed and put in service.",
            registry=self.registry,
        )
        self.redirect_failures = Counter(
            "conveyor_redirect_table_failures",
            "redirects.txt reloads that kept the last good table, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.redirect_current = Gauge(
            "conveyor_redirect_table_current",
            "1 when the table in service matches redirects.txt, 0 when that file is bad.",
            registry=self.registry,
        )
        self.redirect_refused = Gauge(
            "conveyor_redirect_table_refused_lines",
            "Lines of the redirects.txt in service skipped because their target was refused.",
            registry=self.registry,
        )
        self.redirect_entries = Gauge(
            "conveyor_redirect_table_entries",
            "Projects in the redirect table in service.",
            registry=self.registry,
        )
