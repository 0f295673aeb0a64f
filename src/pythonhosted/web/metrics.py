"""Prometheus metrics of a service that may run as several worker processes.

granian's workers share one listening socket, so each scrape of ``/metrics`` lands on one
worker at random; answered from that worker's registry alone, every counter would jump
between the workers' values and rates would be nonsense. So under ``--workers`` (when
:func:`pythonhosted.web.server.run_workers` hands its workers a shared directory) each worker
writes a snapshot of its registry there, every :data:`SNAPSHOT_SECONDS` and at each scrape,
and a scrape answers with the sum over every worker's latest snapshot: the service's totals,
which never go backwards. A worker that exits leaves its last snapshot, so its counts stay in
the totals. Every sample we export is summable: counters, histogram buckets, sums and counts,
and the gauges we have (sizes of per-worker caches, whose sum is the service's total).

A single process (tests, ``serve``, ``--workers 1``) answers from its own registry.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# ``*_created`` series double every counter's output, no dashboard here reads them, and
# summing them over workers would be meaningless.
disable_created_metrics()  # type: ignore[no-untyped-call]

log = logging.getLogger(__name__)
# How run_workers hands its workers the shared directory: an internal handoff, not a setting.
SHARED_DIR_ENV = "_PYTHONHOSTED_WORKER_METRICS_DIR"
SNAPSHOT_SECONDS = 2.0


class ServiceRegistry(CollectorRegistry):
    """A service's registry, named so the workers' snapshots of it can be found and summed."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        shared = os.environ.get(SHARED_DIR_ENV)
        self.shared_dir = Path(shared) if shared else None
        if self.shared_dir is not None:
            threading.Thread(
                target=self._keep_snapshot, name=f"{service}-metrics", daemon=True
            ).start()

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's metrics, or all workers' summed."""
        if self.shared_dir is None:
            return generate_latest(self)
        self._write_snapshot()
        merged = CollectorRegistry()
        merged.register(_Summed(self._snapshots()))
        return generate_latest(merged)

    def _keep_snapshot(self) -> None:
        while True:
            time.sleep(SNAPSHOT_SECONDS)
            try:
                self._write_snapshot()
            except Exception:  # e.g. the directory went away at shutdown; try again later
                log.debug("metrics snapshot of %s failed", self.service, exc_info=True)

    def _write_snapshot(self) -> None:
        assert self.shared_dir is not None
        families = [
            {
                "name": family.name,
                "documentation": family.documentation,
                "type": family.type,
                "unit": family.unit,
                "samples": [[s.name, s.labels, s.value] for s in family.samples],
            }
            for family in self.collect()
        ]
        path = self.shared_dir / f"{self.service}-{os.getpid()}.json"
        spool = path.with_suffix(f".{threading.get_ident()}.tmp")
        spool.write_bytes(orjson.dumps(families))
        spool.replace(path)  # readers see a whole snapshot or the previous one

    def _snapshots(self) -> list[list[dict[str, object]]]:
        assert self.shared_dir is not None
        found = []
        for path in sorted(self.shared_dir.glob(f"{self.service}-*.json")):
            try:
                found.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue  # replaced or removed while we looked: the next scrape has it
        return found


class _Summed(Collector):
    """The families of several snapshots, each sample summed over the snapshots."""

    def __init__(self, snapshots: list[list[dict[str, object]]]) -> None:
        self.families: dict[str, Metric] = {}
        totals: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for snapshot in snapshots:
            for family in snapshot:
                name = str(family["name"])
                if name not in self.families:
                    self.families[name] = Metric(
                        name, str(family["documentation"]), str(family["type"]), str(family["unit"])
                    )
                    totals[name] = {}
                samples = family["samples"]
                assert isinstance(samples, list)
                for sample_name, labels, value in samples:
                    key = (sample_name, tuple(sorted(labels.items())))
                    totals[name][key] = totals[name].get(key, 0.0) + value
        for name, samples in totals.items():
            for (sample_name, labels), value in samples.items():
                self.families[name].add_sample(sample_name, dict(labels), value)

    def collect(self) -> Iterator[Metric]:
        yield from self.families.values()
