"""The edge rides over the 500s S3 answers now and then. With no archive, its primary's
quick failures are tried once more (``Timeouts.serving``); with one, the archive is the
retry, also for an object the primary found and then failed to read. The store is moto
behind a proxy failing the first GET of each object (``support.s3_failures``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from pythonhosted.web.server import running
from support.edge import SAMPLES, EdgeFactory, download_lines, seed
from support.flood import fetch_all
from support.s3_failures import FailingS3, through


@pytest.mark.parametrize("archive", [False, True], ids=["no-archive", "archive"])
def test_each_download_the_primary_answers_500_once_is_served_and_logged_once(
    tmp_path: Path, moto_endpoint: str, s3_url: str, edge: EdgeFactory, archive: bool
) -> None:
    """The primary answers each lookup (HEAD) and fails each object's first read (GET)."""
    seed(s3_url)
    settings = {"logs": f"file://{tmp_path}/logs"}
    if archive:
        settings["archive"] = f"file://{tmp_path}/archive"
        seed(settings["archive"])
    failing = FailingS3(moto_endpoint, "GET", "refused")
    with running(failing) as proxy, edge(primary=through(proxy, s3_url), **settings) as base:
        answers = asyncio.run(fetch_all(base, [sample.path for sample in SAMPLES.values()]))
        metrics = httpx.get(base + "/metrics").text
    assert [(answer.status, answer.body) for answer in answers] == [
        (200, sample.data) for sample in SAMPLES.values()
    ]
    # each file: read from the primary once, then from the archive; or twice from the primary
    files = {path: count for path, count in failing.seen.items() if "/packages/" in path}
    assert sorted(files.values()) == [1 if archive else 2] * len(SAMPLES)
    assert len(download_lines(tmp_path / "logs")) == len(SAMPLES)
    fallbacks = [
        line for line in metrics.splitlines() if line.startswith("files_archive_fallbacks_total")
    ]
    served = (
        f'files_archive_fallbacks_total{{outcome="served",reason="unavailable"}} {len(SAMPLES)}.0'
    )
    assert fallbacks == ([served] if archive else [])
