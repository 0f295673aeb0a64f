"""bqemulator for the BigQuery back end's tests: one per test session (per pytest worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.bqemulator import running

PROJECT = "emulated"


@pytest.fixture(scope="session")
def bqemulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The REST endpoint of a BigQuery emulator on loopback (project ``emulated``)."""
    with running(tmp_path_factory.mktemp("bqemulator"), PROJECT) as endpoint:
        yield endpoint
