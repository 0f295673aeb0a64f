"""Archive fallback (rules 5-6): every way a primary can fail, with the archive on S3."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pythonhosted.files.upload import upload
from pythonhosted.storage import open_store
from pythonhosted.storage.breaker import TRIP_AFTER
from pythonhosted.web.responses import send_text
from pythonhosted.web.server import free_port, running
from pythonhosted.web.types import Receive, Scope, Send
from support.edge import SAMPLES, EdgeFactory, Sample, seed, stored_wheel
from support.flood import fetch_all
from support.passthrough import forward

WHEEL = SAMPLES["wheel"]
FAST = {"primary_connect_timeout": 0.5, "primary_read_timeout": 0.5}


async def failing_s3(scope: Scope, receive: Receive, send: Send) -> None:
    """An S3 endpoint that answers every request with a 500."""
    if scope["type"] == "http":
        await send_text(send, 500, "InternalError")


async def hanging_s3(scope: Scope, receive: Receive, send: Send) -> None:
    """An S3 endpoint that accepts the request and never answers (within the test)."""
    if scope["type"] == "http":
        await asyncio.sleep(5)
        await send_text(send, 200, "too late")


@contextmanager
def broken_primary(kind: str) -> Iterator[str]:
    if kind == "refused":
        yield f"s3://bucket?endpoint=http://127.0.0.1:{free_port()}&allow_http=true"
        return
    app = failing_s3 if kind == "error" else hanging_s3
    with running(app) as endpoint:
        yield f"s3://bucket?endpoint={endpoint}&allow_http=true"


def fallbacks(metrics: str) -> dict[tuple[str, str], float]:
    pattern = r'files_archive_fallbacks_total\{outcome="(\w+)",reason="(\w+)"\} ([\d.]+)'
    return {(reason, outcome): float(n) for outcome, reason, n in re.findall(pattern, metrics)}


@pytest.fixture
def archive_url(s3_url: str) -> str:
    seed(s3_url)
    return s3_url


def test_primary_missing_the_key(edge: EdgeFactory, tmp_path: Path, archive_url: str) -> None:
    with edge(primary=f"file://{tmp_path}/empty", archive=archive_url) as url:
        response = httpx.get(url + WHEEL.path)
        metrics = httpx.get(url + "/metrics").text
    assert (response.status_code, response.content) == (200, WHEEL.data)
    assert response.headers["x-pypi-file-project"] == "demo-pkg"
    assert fallbacks(metrics) == {("missing", "served"): 1.0}


@pytest.mark.parametrize("kind", ["error", "refused", "hanging"])
def test_failing_primary_falls_back(edge: EdgeFactory, archive_url: str, kind: str) -> None:
    with broken_primary(kind) as primary, edge(primary=primary, archive=archive_url, **FAST) as url:
        response = httpx.get(url + WHEEL.path)
        metrics = httpx.get(url + "/metrics").text
    assert (response.status_code, response.content) == (200, WHEEL.data)
    assert fallbacks(metrics) == {("unavailable", "served"): 1.0}


def test_both_missing_is_404(edge: EdgeFactory, tmp_path: Path) -> None:
    with edge(primary=f"file://{tmp_path}/a", archive=f"file://{tmp_path}/b") as url:
        response = httpx.get(url + WHEEL.path)
        metrics = httpx.get(url + "/metrics").text
    assert response.status_code == 404
    assert fallbacks(metrics) == {("missing", "missing"): 1.0}


def test_both_failing_is_503(edge: EdgeFactory) -> None:
    with (
        broken_primary("error") as primary,
        broken_primary("refused") as archive,
        edge(primary=primary, archive=archive, archive_connect_timeout=0.5, **FAST) as url,
    ):
        response = httpx.get(url + WHEEL.path)
        metrics = httpx.get(url + "/metrics").text
    assert (response.status_code, response.text) == (503, "Storage unavailable\n")
    assert fallbacks(metrics) == {("unavailable", "unavailable"): 1.0}


def test_failing_primary_without_archive_is_503(edge: EdgeFactory) -> None:
    with broken_primary("error") as primary, edge(primary=primary, **FAST) as url:
        response = httpx.get(url + WHEEL.path)
    assert response.status_code == 503


class FlakyS3:
    """Passes requests through to moto (counting them) until ``broken`` is set, then 500s."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.broken = False
        self.requests: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.requests.append(scope["method"])
        if self.broken:
            await send_text(send, 500, "InternalError")
            return
        await forward(self.upstream, scope, receive, send)


def test_cached_objects_survive_a_failing_store(
    edge: EdgeFactory, moto_endpoint: str, s3_url: str
) -> None:
    """Rule 19: a store error does not hide an object the edge already holds (stale-if-error).

    The store's usual timeouts, not FAST ones: the broken store answers at once, and the first
    read through the pass-through proxy took over 0.5 s on a machine at load 20."""
    seed(s3_url)
    flaky = FlakyS3(moto_endpoint)
    bucket = s3_url.split("?", 1)[0].removeprefix("s3://")
    with running(flaky) as endpoint:
        primary = f"s3://{bucket}?endpoint={endpoint}&allow_http=true"
        with edge(primary=primary) as url:
            first = httpx.get(url + WHEEL.path)
            flaky.broken = True
            second = httpx.get(url + WHEEL.path)
            uncached = httpx.get(url + SAMPLES["sdist"].path)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.content == WHEEL.data
    assert uncached.status_code == 503


def test_a_cold_burst_reads_the_store_once(
    edge: EdgeFactory, moto_endpoint: str, s3_url: str
) -> None:
    """Thirty clients asking at once for an object the edge has not seen: one lookup, one read
    of its catalog record (its length, checked: ``files/damage.py``), one read."""
    seed(s3_url)
    counting = FlakyS3(moto_endpoint)
    bucket = s3_url.split("?", 1)[0].removeprefix("s3://")

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(*(client.get(url + WHEEL.path) for _ in range(30)))

    with running(counting) as endpoint:
        primary = f"s3://{bucket}?endpoint={endpoint}&allow_http=true"
        with edge(primary=primary) as url:
            responses = asyncio.run(burst(url))
    assert [r.status_code for r in responses] == [200] * 30
    assert all(r.content == WHEEL.data for r in responses)
    assert sorted(counting.requests) == ["GET", "GET", "HEAD"]


def test_a_scan_of_missing_files_logs_a_sample_not_a_line_each(
    edge: EdgeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each 404 under /packages/ is an archive fallback; a scan of made-up paths used to log
    a line for every one. Now the first few a minute are logged, the rest at DEBUG, and the
    metric counts them all."""
    paths = [f"/packages/aa/bb/{n:060x}/nope-{n}.whl" for n in range(2_000)]
    logger = "pythonhosted.storage.fallback"
    with (
        caplog.at_level(logging.DEBUG, logger=logger),
        edge(primary=f"file://{tmp_path}/a", archive=f"file://{tmp_path}/b") as url,
    ):
        answers = asyncio.run(fetch_all(url, paths, concurrency=50))
        metrics = httpx.get(url + "/metrics").text
    assert [answer.status for answer in answers] == [404] * 2_000
    assert fallbacks(metrics) == {("missing", "missing"): 2_000.0}
    records = [record for record in caplog.records if record.name == logger]
    assert [record.levelno for record in records] == [logging.INFO] * 10 + [logging.DEBUG] * 1990
    assert records[0].getMessage().startswith("archive fallback for packages/aa/bb/")


def test_an_outage_of_both_stores_logs_a_sample_not_a_line_per_request(
    edge: EdgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """While both stores are down every request is a 503; each used to log two warnings."""
    paths = [f"/packages/aa/bb/{n:060x}/down-{n}.whl" for n in range(300)]
    with (
        caplog.at_level(logging.DEBUG, logger="pythonhosted"),
        broken_primary("refused") as primary,
        broken_primary("refused") as archive,
        edge(primary=primary, archive=archive, **FAST) as url,
    ):
        answers = asyncio.run(fetch_all(url, paths, concurrency=50))
    assert [answer.status for answer in answers] == [503] * 300
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert sorted({record.name for record in warnings}) == [
        "pythonhosted.files.app",
        "pythonhosted.storage.breaker",
        "pythonhosted.storage.fallback",
        "pythonhosted.storage.retrybudget",
    ]
    # ten of each a minute (the other 290 of each at DEBUG); the primary skipped once, and
    # the archive's retries stopped once
    assert len(warnings) == 2 * 10 + 2
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) >= 2 * 290


def _stored_twice(primary: Path, archive: Path, count: int) -> list[Sample]:
    """``count`` wheels uploaded to both stores, as the archive keeps every primary object."""
    samples = [stored_wheel(f"file://{primary}", f"cut-{n}", 2_000 + 50 * n) for n in range(count)]
    for sample in samples:
        asyncio.run(upload(open_store(f"file://{archive}"), sample.filename, sample.data))
    return samples


def _cut(root: Path, sample: Sample, keep: int) -> None:
    """The store's copy loses its tail (a copy that stopped half-way, a damaged disk)."""
    os.truncate(root / sample.key, keep)


def test_a_primary_copy_shorter_than_its_record_is_served_from_the_archive(
    edge: EdgeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The catalog record says how long a file is; a primary copy of another length is
    damaged, and its bytes must never go out as the file with a year of immutable caching
    (they did: 200, the short length, a wheel every installer refuses, cached by every proxy).
    The archive's copy is served instead; the log says so within bounds, the metric counts
    each. 40 files, 30 of them cut (to nothing, one byte, half), each asked 20 times."""
    primary, archive = tmp_path / "primary", tmp_path / "archive"
    samples = _stored_twice(primary, archive, 40)
    for n, sample in enumerate(samples[:30]):
        _cut(primary, sample, (0, 1, len(sample.data) // 2)[n % 3])
    paths = [sample.path for sample in samples] * 20
    with (
        caplog.at_level(logging.DEBUG, logger="pythonhosted.files.app"),
        edge(primary=f"file://{primary}", archive=f"file://{archive}") as url,
    ):
        answers = asyncio.run(fetch_all(url, paths, concurrency=50))
        metrics = httpx.get(url + "/metrics").text
    by_path = {sample.path: sample.data for sample in samples}
    assert [(a.status, a.body) for a in answers] == [(200, by_path[p]) for p in paths]
    assert fallbacks(metrics) == {("damaged", "served"): 30.0}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 10  # ten a minute, the other 20 at DEBUG
    assert warnings[0].startswith("archive fallback for packages/")
    assert "primary copy is damaged:" in warnings[0]


def test_a_damaged_file_with_no_good_copy_is_503_not_the_damaged_bytes(
    edge: EdgeFactory, tmp_path: Path
) -> None:
    """No archive, or an archive whose copy is damaged too or missing: 503 (which no cache
    keeps for a year), not the damaged bytes; once repaired and purged the file is served."""
    primary, archive = tmp_path / "primary", tmp_path / "archive"
    damaged_twice, only_in_primary, cut_alone = _stored_twice(primary, archive, 3)
    for sample in (damaged_twice, only_in_primary, cut_alone):
        _cut(primary, sample, 10)
    _cut(archive, damaged_twice, len(damaged_twice.data) - 1)
    (archive / only_in_primary.key).unlink()
    with edge(primary=f"file://{primary}", archive=f"file://{archive}") as url:
        answers = [httpx.get(url + s.path) for s in (damaged_twice, only_in_primary)]
        metrics = httpx.get(url + "/metrics").text
    with edge(primary=f"file://{primary}") as url:
        alone = httpx.get(url + cut_alone.path)
        (primary / cut_alone.key).write_bytes(cut_alone.data)
        repaired = httpx.get(url + cut_alone.path)
    assert [(a.status_code, a.text) for a in answers] == [(503, "Storage unavailable\n")] * 2
    assert "immutable" not in answers[0].headers.get("cache-control", "")
    assert fallbacks(metrics) == {("damaged", "damaged"): 1.0, ("damaged", "missing"): 1.0}
    assert (alone.status_code, repaired.status_code) == (503, 200)
    assert repaired.content == cut_alone.data


def _missing(number: int) -> str:
    """A distribution's path that neither store holds."""
    return f"/packages/aa/bb/{number:060x}/gone-{number}.whl"


def _skipped(url: str) -> str:
    """The edge's ``files_primary_skipped`` gauge, as exported."""
    metrics = httpx.get(url + "/metrics").text
    return next(line for line in metrics.splitlines() if line.startswith("files_primary_skipped "))


def test_a_primary_failing_lookups_in_a_row_is_skipped_then_tried_again(
    edge: EdgeFactory, moto_endpoint: str, s3_url: str
) -> None:
    """In a primary's outage every lookup waited for its failure before the archive answered
    (a hanging primary: the whole first-byte timeout, 2 s, for each download). After
    ``TRIP_AFTER`` failures in a row the edge asks the archive first, and the primary only for
    what the archive lacks, until the primary answers one of those or a trial after
    ``COOLDOWN``."""
    held = {f"/packages/aa/bb/{n:060x}/held-{n}.whl": b"held %d" % n for n in range(40)}
    for path, data in held.items():
        asyncio.run(open_store(s3_url).put(path.removeprefix("/"), data))
    flaky = FlakyS3(moto_endpoint)  # the primary: the same bucket as the archive
    flaky.broken = True
    bucket = s3_url.split("?", 1)[0].removeprefix("s3://")
    with running(flaky) as endpoint:
        primary = f"s3://{bucket}?endpoint={endpoint}&allow_http=true"
        with edge(primary=primary, archive=s3_url) as url:
            failing = [httpx.get(url + _missing(n)).status_code for n in range(TRIP_AFTER)]
            asked_first = len(flaky.requests)
            crowd = asyncio.run(fetch_all(url, list(held), concurrency=10))
            asked_by_crowd = len(flaky.requests) - asked_first
            skipped = _skipped(url)
            before = len(flaky.requests)
            lacking = httpx.get(url + _missing(100))  # the archive lacks it: the primary is asked
            asked_for_lacking = len(flaky.requests) - before
            flaky.broken = False
            back_with = httpx.get(url + _missing(101))
            back = _skipped(url)
            before = len(flaky.requests)
            after = httpx.get(url + _missing(102))
            asked_after = len(flaky.requests) - before
    assert (failing, asked_first) == ([503] * TRIP_AFTER, TRIP_AFTER)
    assert [(answer.status, answer.body) for answer in crowd] == list(
        zip([200] * len(held), held.values(), strict=True)
    )
    # 40 lookups and none to the primary (or one trial, if a loaded run took past COOLDOWN)
    assert asked_by_crowd <= 1
    assert (skipped, lacking.status_code, asked_for_lacking) == (
        "files_primary_skipped 1.0",
        503,
        1,
    )
    # the primary's answer (a 404) ends the skipping; the next lookup asks it first
    assert (back_with.status_code, back) == (404, "files_primary_skipped 0.0")
    assert (after.status_code, asked_after) == (404, 1)
