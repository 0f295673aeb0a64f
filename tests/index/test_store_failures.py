"""The index rides over the 500s S3 answers now and then: with no other store to fall back
to, it retries a quick failure once (``Timeouts.serving``), as conveyor does. The store is
moto behind a proxy failing the first GET of each object (``support.s3_failures``)."""

from __future__ import annotations

from pathlib import Path

import httpx

from pythonhosted.config import FilesSettings, Settings
from pythonhosted.index.service import build_app as build_index
from pythonhosted.web.server import running
from support.edge import SAMPLES, seed
from support.s3_failures import FailingS3, through

JSON = "application/vnd.pypi.simple.v1+json"


def test_a_project_page_whose_records_are_each_answered_500_once_is_whole(
    tmp_path: Path, moto_endpoint: str, s3_url: str
) -> None:
    seed(s3_url)
    failing = FailingS3(moto_endpoint, "GET", "refused")
    with running(failing) as proxy:
        settings = Settings(
            data_dir=tmp_path / "data",
            files=FilesSettings(primary=through(proxy, s3_url), logs=f"file://{tmp_path}/logs"),
        )
        with running(build_index(settings)) as index:
            page = httpx.get(index + "/simple/demo-pkg/", headers={"Accept": JSON}, timeout=60)
    assert page.status_code == 200
    assert sorted(item["filename"] for item in page.json()["files"]) == sorted(
        sample.filename for sample in SAMPLES.values()
    )
    records = {path: count for path, count in failing.seen.items() if "/catalog/" in path}
    assert sorted(records.values()) == [2] * len(SAMPLES)
