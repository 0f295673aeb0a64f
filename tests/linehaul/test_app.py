"""Linehaul as a service: ingest and publish in the background, /_health and /metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pythonhosted.config import LinehaulSettings, Settings
from pythonhosted.linehaul.app import LinehaulApp
from pythonhosted.storage import open_store
from pythonhosted.web.server import Bind, free_port, running, wait_for_port
from support.linehaul_data import download_line, gz, log_key, simple_line
from support.processes import finish_group, spawn, wait_until

QUICK = {"ingest_interval": 0.1, "publish_interval": 0.1, "lease_timeout": 30.0}


def _settings(tmp_path: Path, **linehaul: object) -> Settings:
    section = {
        "logs": f"file://{tmp_path}/logs",
        "results": f"file://{tmp_path}/results",
        "warehouse": f"duckdb://{tmp_path}/warehouse.duckdb",
        **QUICK,
        **linehaul,
    }
    return Settings(data_dir=tmp_path / "data", linehaul=LinehaulSettings(**section))


def _samples(base: str) -> dict[str, float]:
    """Every sample of /metrics, keyed by name and labels as Prometheus prints them."""
    response = httpx.get(f"{base}/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_jobs_run_in_the_background_and_report(tmp_path: Path) -> None:
    lines = [
        download_line(1),
        download_line(2),
        download_line(3),
        simple_line(4),
        download_line(5, agent="Datadog Agent/7.50.0"),  # ignored
        "download|not a log line",  # unprocessable
        "",  # blank
        "download|" + "x" * (65 << 10),  # too long
    ]

    async def seed() -> None:
        logs = open_store(f"file://{tmp_path}/logs")
        await logs.put(log_key(1), gz(lines))
        await logs.put(log_key(2), b"\x1f\x8b not gzip at all")

    asyncio.run(seed())
    app = LinehaulApp(_settings(tmp_path))
    with running(app) as base:
        wait_until(lambda: _samples(base)["linehaul_publish_rows_total"] == 4)
        wait_until(lambda: _samples(base)["linehaul_ingest_pending_objects"] == 0)  # a later pass
        samples = _samples(base)
        health = httpx.get(f"{base}/_health")
    assert (health.status_code, health.text) == (200, "OK\n")
    assert health.headers["x-content-type-options"] == "nosniff"
    assert {
        name: value
        for name, value in samples.items()
        if "passes" not in name
        and "timestamp" not in name
        and not name.startswith(("linehaul_requests", "linehaul_bytes_sent"))  # the shell's
    } == {
        'linehaul_ingest_objects_total{outcome="done"}': 1.0,
        'linehaul_ingest_objects_total{outcome="corrupt"}': 1.0,
        'linehaul_ingest_objects_total{outcome="busy"}': 0.0,
        'linehaul_ingest_lines_total{result="row"}': 4.0,
        'linehaul_ingest_lines_total{result="ignored"}': 1.0,
        'linehaul_ingest_lines_total{result="unprocessable"}': 1.0,
        'linehaul_ingest_lines_total{result="blank"}': 1.0,
        'linehaul_ingest_lines_total{result="too_long"}': 1.0,
        'linehaul_ingest_lines_total{result="served"}': 0.0,
        'linehaul_ingest_lines_total{result="lost"}': 0.0,
        "linehaul_ingest_unreadable_bytes_total": 18.0,  # the whole object that is not gzip
        "linehaul_ingest_pending_objects": 0.0,
        'linehaul_publish_files_total{outcome="loaded"}': 2.0,
        'linehaul_publish_files_total{outcome="skipped"}': 0.0,
        'linehaul_publish_files_total{outcome="failed"}': 0.0,
        "linehaul_publish_rows_total": 4.0,
        "linehaul_publish_distributions_total": 0.0,
    }
    assert samples['linehaul_passes_total{job="ingest",outcome="ok"}'] >= 1
    assert samples['linehaul_passes_total{job="publish",outcome="failed"}'] == 0
    assert 0 < time.time() - samples['linehaul_last_success_timestamp_seconds{job="publish"}'] < 60
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        counts = [
            db.execute(f"SELECT count(*) FROM {t}").fetchone()
            for t in ("file_downloads", "simple_requests")
        ]
    assert counts == [(3,), (1,)]


def test_a_failing_job_shows_in_health_and_metrics(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the warehouse's directory should be")
    settings = _settings(tmp_path, warehouse=f"duckdb://{tmp_path}/not-a-dir/warehouse.duckdb")
    app = LinehaulApp(settings)
    with running(app) as base:
        wait_until(
            lambda: _samples(base)['linehaul_passes_total{job="publish",outcome="failed"}'] >= 1
        )
        health = httpx.get(f"{base}/_health")
        samples = _samples(base)
    assert health.status_code == 503
    assert health.text.startswith("publish pass failed: ")
    assert health.text.count("\n") == 1  # one line per failing job; ingest is fine
    assert samples['linehaul_passes_total{job="ingest",outcome="failed"}'] == 0
    assert samples['linehaul_last_success_timestamp_seconds{job="publish"}'] == 0


def test_a_failure_is_logged_when_it_begins_and_when_it_ends_not_at_every_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the warehouse's directory should be")
    settings = _settings(tmp_path, warehouse=f"duckdb://{blocker}/warehouse.duckdb")
    caplog.set_level(logging.INFO, logger="pythonhosted.linehaul")
    with running(LinehaulApp(settings)) as base:
        failed = 'linehaul_passes_total{job="publish",outcome="failed"}'
        wait_until(lambda: _samples(base)[failed] >= 5)  # every 0.1 s
        blocker.unlink()
        blocker.mkdir()
        wait_until(lambda: _samples(base)['linehaul_passes_total{job="publish",outcome="ok"}'] >= 1)
        failures = int(_samples(base)[failed])
    publish = [
        (record.levelname, record.getMessage().split(":")[0])
        for record in caplog.records
        if record.getMessage().startswith("linehaul publish")
    ]
    assert publish == [
        ("WARNING", "linehaul publish pass failed"),
        ("INFO", f"linehaul publish works again after {failures} failed passes"),
    ]


def test_other_paths_and_methods(tmp_path: Path) -> None:
    with running(LinehaulApp(_settings(tmp_path))) as base:
        missing = httpx.get(f"{base}/stats")
        posted = httpx.post(f"{base}/_health")
        head = httpx.head(f"{base}/_health")
    assert (missing.status_code, missing.text) == (
        404,
        "Not found: linehaul answers /_health and /metrics\n",
    )
    assert (posted.status_code, posted.headers["allow"]) == (405, "GET, HEAD")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "3")


def _start(tmp_path: Path, command: str) -> tuple[Bind, subprocess.Popen[bytes]]:
    """``pythonhosted linehaul COMMAND --bind`` on a free port, over a data dir holding one
    log object of one download, with short intervals."""
    bind = Bind("127.0.0.1", free_port())
    asyncio.run(open_store(f"file://{tmp_path}/logs").put(log_key(1), gz([download_line(1)])))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONHOSTED_")}
    env["PYTHONHOSTED_LINEHAUL__INGEST_INTERVAL"] = "0.1"
    env["PYTHONHOSTED_LINEHAUL__PUBLISH_INTERVAL"] = "0.1"
    env["PYTHONHOSTED_DATA_DIR"] = str(tmp_path)
    argv = [sys.executable, "-m", "pythonhosted", "linehaul", command]
    argv += ["--bind", f"{bind.host}:{bind.port}"]
    return bind, spawn(argv, env=env, stderr=subprocess.PIPE)


def test_linehaul_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    bind, process = _start(tmp_path, "serve")
    try:
        wait_for_port(bind, timeout=60)
        wait_until(lambda: _samples(bind.url())["linehaul_publish_rows_total"] == 1)
    finally:
        _, err = finish_group(process)
    stderr = err.decode()
    assert process.returncode == 0, stderr
    assert stderr.splitlines()[0] == (
        f"linehaul on {bind.url()} (logs file://{tmp_path}/logs; results "
        f"file://{tmp_path}/results; warehouse duckdb://{tmp_path}/warehouse.duckdb)"
    )
    assert [path for path in (tmp_path / "logs").rglob("*") if path.is_file()] == []


def test_an_ingest_worker_with_bind_reports_its_one_job(tmp_path: Path) -> None:
    bind, process = _start(tmp_path, "ingest")
    try:
        wait_for_port(bind, timeout=60)
        wait_until(lambda: _samples(bind.url())['linehaul_ingest_lines_total{result="row"}'] == 1)
        samples = _samples(bind.url())
        health = httpx.get(f"{bind.url()}/_health")
    finally:
        _, stderr = finish_group(process)
    assert process.returncode == 0, stderr
    assert health.text == "OK\n"
    assert sorted(name for name in samples if "job=" in name) == [
        'linehaul_last_success_timestamp_seconds{job="ingest"}',
        'linehaul_passes_total{job="ingest",outcome="failed"}',
        'linehaul_passes_total{job="ingest",outcome="ok"}',
    ]
    assert len(list((tmp_path / "results" / "processed").rglob("downloads-*.json"))) == 1


@pytest.mark.parametrize("command", ["serve", "ingest", "publish"])
def test_a_bad_bind_is_a_usage_error(tmp_path: Path, command: str) -> None:
    argv = [sys.executable, "-m", "pythonhosted", "linehaul", command, "--bind", "nowhere"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: bind address must be HOST:PORT, got 'nowhere'"
    )


@pytest.mark.parametrize("command", ["ingest", "publish"])
def test_bind_with_once_is_a_usage_error(tmp_path: Path, command: str) -> None:
    argv = [sys.executable, "-m", "pythonhosted", "linehaul", command, "--once"]
    result = subprocess.run(
        [*argv, "--bind", "127.0.0.1:1"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: --bind serves a running worker's metrics; --once does not run one"
    )
    assert not (tmp_path / "var").exists()  # refused before touching any store
