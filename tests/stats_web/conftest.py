"""The stats web serving a warehouse of known numbers (support.stats_warehouse) on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pythonhosted.stats_web import build_app
from pythonhosted.web.server import running
from support.stats_warehouse import Warehouse, build, event_lines


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    return build(tmp_path_factory.mktemp("stats-web"), event_lines())


@pytest.fixture(scope="module")
def base(warehouse: Warehouse) -> Iterator[str]:
    with running(build_app(warehouse.settings)) as url:
        yield url
