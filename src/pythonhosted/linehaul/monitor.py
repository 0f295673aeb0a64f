"""What linehaul's background jobs report after each pass: Prometheus metrics, and the state
``/_health`` answers from.

The number to alert on is ``linehaul_last_success_timestamp_seconds``: a pipeline that
stopped (store down, warehouse locked, worker wedged) shows as its growing age, whatever the
reason; the counters say how much went through and what was set aside.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from prometheus_client import Counter, Gauge

from pythonhosted.web.metrics import ServiceRegistry

if TYPE_CHECKING:
    from pythonhosted.linehaul.ingest import IngestSummary
    from pythonhosted.linehaul.publish import PublishSummary

Job = Literal["ingest", "publish"]
JOBS: tuple[Job, ...] = ("ingest", "publish")
_LINE_RESULTS = ("row", "ignored", "unprocessable", "blank", "too_long", "served", "lost")


class Monitor:
    """One per process (and per app instance, so tests never share counts), for the ``jobs``
    it runs: only their labelled series exist, so an absent job never looks stalled."""

    def __init__(self, jobs: Sequence[Job] = JOBS) -> None:
        self.registry = ServiceRegistry("linehaul")
        self.objects = Counter(
            "linehaul_ingest_objects",
            "Log objects ingest took, by outcome: done, corrupt (moved aside), busy (another "
            "worker held it).",
            ["outcome"],
            registry=self.registry,
        )
        self.lines = Counter(
            "linehaul_ingest_lines",
            "Lines of ingested log objects, by result: row, ignored (a bot's user agent), "
            "unprocessable (kept under unprocessed/), blank (dropped), too_long (cut; the start "
            "of a few kept under unprocessed/), served (the edge's response facts, into the "
            "download row after them), lost (cut by damage in a corrupt object).",
            ["result"],
            registry=self.registry,
        )
        self.unreadable = Counter(
            "linehaul_ingest_unreadable_bytes",
            "Compressed bytes of corrupt log objects after the damage, never read.",
            registry=self.registry,
        )
        self.pending = Gauge(
            "linehaul_ingest_pending_objects",
            "Log objects waiting when the latest ingest pass began.",
            registry=self.registry,
        )
        self.files = Counter(
            "linehaul_publish_files",
            "Result files publish took, by outcome: loaded, skipped (loaded before), failed "
            "(left in place).",
            ["outcome"],
            registry=self.registry,
        )
        self.rows = Counter(
            "linehaul_publish_rows", "Rows loaded into the warehouse.", registry=self.registry
        )
        self.distributions = Counter(
            "linehaul_publish_distributions",
            "distribution_metadata rows added from the upload queue.",
            registry=self.registry,
        )
        self.passes = Counter(
            "linehaul_passes",
            "Passes of each job (ingest, publish) by outcome (ok, failed).",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "linehaul_last_success_timestamp_seconds",
            "When each job last finished a pass (Unix time; 0 before the first).",
            ["job"],
            registry=self.registry,
        )
        self.failing: dict[Job, str] = {}
        self.failed_in_a_row: dict[Job, int] = {}
        for job in jobs:  # each series exists from the start, at zero
            self.last_success.labels(job)
            for outcome in ("ok", "failed"):
                self.passes.labels(job, outcome)
        if "ingest" in jobs:
            for outcome in ("done", "corrupt", "busy"):
                self.objects.labels(outcome)
            for result in _LINE_RESULTS:
                self.lines.labels(result)
        if "publish" in jobs:
            for outcome in ("loaded", "skipped", "failed"):
                self.files.labels(outcome)

    def ingested(self, summary: IngestSummary) -> int:
        """Count a pass that worked; the number of failed passes it ends (0: none)."""
        self.objects.labels("done").inc(summary.objects)
        self.objects.labels("corrupt").inc(summary.corrupt)
        self.objects.labels("busy").inc(summary.busy)
        counts = summary.counts
        found = (
            counts.rows,
            counts.ignored,
            counts.unprocessable,
            counts.blank,
            counts.too_long,
            counts.served,
        )
        for result, count in zip(_LINE_RESULTS, (*found, summary.lost), strict=True):
            self.lines.labels(result).inc(count)
        self.unreadable.inc(summary.unreadable)
        return self._passed("ingest")

    def published(self, summary: PublishSummary) -> int:
        """Count a pass that worked; the number of failed passes it ends (0: none)."""
        self.files.labels("loaded").inc(summary.files)
        self.files.labels("skipped").inc(summary.skipped)
        self.files.labels("failed").inc(summary.failed)
        self.rows.inc(summary.rows)
        self.distributions.inc(summary.distributions)
        return self._passed("publish")

    def failed(self, job: Job, reason: str) -> bool:
        """A pass that could not finish (a store or the warehouse unavailable). True when the
        failure is news: the first of a run of failed passes, or its reason changed.

        Why: the jobs retry every interval (10 s in ``serve``), so a store that is down for
        a night logged the same warning thousands of times; the callers log only news, and
        every pass is still counted (``linehaul_passes_total``) and shown by ``/_health``.
        """
        self.passes.labels(job, "failed").inc()
        self.failed_in_a_row[job] = self.failed_in_a_row.get(job, 0) + 1
        news = self.failing.get(job) != reason
        self.failing[job] = reason
        return news

    def _passed(self, job: Job) -> int:
        self.passes.labels(job, "ok").inc()
        self.last_success.labels(job).set(time.time())
        self.failing.pop(job, None)
        return self.failed_in_a_row.pop(job, 0)

    def problems(self) -> list[str]:
        """``job: reason`` for each job whose latest pass failed; empty when all is well."""
        return [f"{job} pass failed: {reason}" for job, reason in sorted(self.failing.items())]
