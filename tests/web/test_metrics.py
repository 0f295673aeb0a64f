"""Worker metrics summed at scrape time, through the public registry and a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import Counter, Histogram

from pythonhosted.web.metrics import SHARED_DIR_ENV, ServiceRegistry

OTHER_WORKER = """
from prometheus_client import Counter, Histogram
from pythonhosted.web.metrics import ServiceRegistry

registry = ServiceRegistry("svc")
requests = Counter("svc_requests", "Responses.", ["status"], registry=registry)
size = Histogram("svc_size", "Sizes.", buckets=[10.0], registry=registry)
requests.labels("200").inc(3)
requests.labels("404").inc()
size.observe(5)
registry.exposition()  # writes this worker's snapshot
"""


def _metrics(registry: ServiceRegistry) -> tuple[Counter, Histogram]:
    requests = Counter("svc_requests", "Responses.", ["status"], registry=registry)
    size = Histogram("svc_size", "Sizes.", buckets=[10.0], registry=registry)
    return requests, size


def test_a_single_process_answers_from_its_own_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SHARED_DIR_ENV, raising=False)
    registry = ServiceRegistry("svc")
    requests, _ = _metrics(registry)
    requests.labels("200").inc(2)
    assert 'svc_requests_total{status="200"} 2.0' in registry.exposition().decode().splitlines()


def test_workers_snapshots_are_summed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path))
    subprocess.run([sys.executable, "-c", OTHER_WORKER], check=True)
    registry = ServiceRegistry("svc")
    requests, size = _metrics(registry)
    requests.labels("200").inc(2)
    size.observe(50)
    unrelated = ServiceRegistry("other")  # another service's snapshot is not mixed in
    Counter("svc_requests", "Responses.", ["status"], registry=unrelated).labels("200").inc(100)
    unrelated.exposition()

    lines = registry.exposition().decode().splitlines()

    assert [line for line in lines if line.startswith("svc_")] == [
        'svc_requests_total{status="200"} 5.0',
        'svc_requests_total{status="404"} 1.0',
        'svc_size_bucket{le="10.0"} 1.0',
        'svc_size_bucket{le="+Inf"} 2.0',
        "svc_size_count 2.0",
        "svc_size_sum 55.0",
    ]
    assert "# TYPE svc_requests_total counter" in lines
    assert "# TYPE svc_size histogram" in lines
