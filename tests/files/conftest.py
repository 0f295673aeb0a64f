"""Fixtures for the files edge: seeded stores of every kind and a live edge over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pythonhosted.config import FilesSettings, Settings
from pythonhosted.files.service import build_edge
from pythonhosted.web.server import running
from support.edge import EdgeFactory, seed


@pytest.fixture(params=["file", "s3", "seaweedfs", "gcs"])
def primary_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A primary store of each kind holding the samples (S3: moto and SeaweedFS)."""
    if request.param == "file":
        url = f"file://{tmp_path}/primary"
        seed(url)
    elif request.param in ("s3", "seaweedfs"):
        url = request.getfixturevalue(f"{request.param}_url")
        seed(url)
    else:
        bucket = request.getfixturevalue("gcs_bucket")
        url = bucket.url
        seed(url, bucket)
    return url


@pytest.fixture
def edge(tmp_path: Path) -> EdgeFactory:
    """``with edge(primary=…, archive=…, logs=…, **files_settings) as base_url``."""

    @contextmanager
    def start(**files: Any) -> Iterator[str]:
        settings = Settings(data_dir=tmp_path / "data", files=FilesSettings(**files))
        with running(build_edge(settings)) as url:
            yield url

    return start
