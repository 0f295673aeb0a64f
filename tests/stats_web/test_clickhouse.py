"""The stats web on a ClickHouse warehouse (chDB) answers every route as it does on DuckDB:
the same log batches through ingest and publish into each, the same bodies back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pythonhosted.stats_web import build_app
from pythonhosted.web.server import running
from support.stats_warehouse import build, event_lines

# On one pytest worker, which builds its DuckDB and chDB warehouses once.
pytestmark = pytest.mark.xdist_group("stats_web_clickhouse")

# A cold chDB answer takes well under a second; httpx's default 5 s was passed by six of them
# on a machine at load 20-24.
ANSWER_WITHIN = 60.0
PATHS = [
    "/api/packages/demo-pkg/recent",
    "/api/packages/demo-pkg/overall",
    "/api/packages/demo-pkg/overall?mirrors=true",
    "/api/packages/demo-pkg/python_major",
    "/api/packages/demo-pkg/python_minor?version=3.12",
    "/api/packages/demo-pkg/system",
    "/api/v1/projects/demo-pkg/downloads?by=installer,python&interval=week",
    "/api/v1/projects/demo-pkg/downloads?by=cpu&mirrors=true&ci=true",
    "/api/v1/projects/Demo.Pkg/summary",
    "/api/v1/compare?projects=demo-pkg,other&interval=month",
    "/api/v1/top?period=week",
    "/api/v1/top?period=month&mirrors=true",
    "/api/v1/trending",
    "/api/v1/search?q=de",
    "/api/v1/coverage?by=day&days=3",
    "/api/v1/projects/demo-pkg/shields?period=total",
    "/badge/demo-pkg.svg",
    "/",
    "/packages/demo-pkg",
    "/packages/demo-pkg?range=all&interval=week&mirrors=true&ci=true",
    "/compare?projects=demo-pkg,other",
    "/api/v1/projects/demo-pk/summary",  # unknown, with a suggestion
    "/packages/nope",
]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    hour = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2)
    lines = event_lines()
    duck = build(tmp_path_factory.mktemp("duck"), lines, hour=hour)
    tmp = tmp_path_factory.mktemp("chdb")
    chdb = build(tmp, lines, warehouse=f"chdb://{tmp}/ch", hour=hour)
    with running(build_app(duck.settings)) as one, running(build_app(chdb.settings)) as two:
        yield one, two


@pytest.mark.parametrize("path", PATHS)
def test_every_route_answers_as_on_duckdb(bases: tuple[str, str], path: str) -> None:
    on_duckdb, on_chdb = (httpx.get(base + path, timeout=ANSWER_WITHIN) for base in bases)
    unknown = "nope" in path or "demo-pk/" in path
    assert on_duckdb.status_code == (404 if unknown else 200)
    assert on_chdb.status_code == on_duckdb.status_code
    assert on_chdb.text == on_duckdb.text
    assert on_chdb.headers["etag"] == on_duckdb.headers["etag"]


def test_a_missing_chdb_warehouse_is_a_503(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("none")
    duck = build(tmp, [], warehouse=f"chdb://{tmp}/ch")
    settings = duck.settings.model_copy(
        update={
            "stats_web": duck.settings.stats_web.model_copy(
                update={"warehouse": f"chdb://{tmp}/absent"}
            )
        }
    )
    with running(build_app(settings)) as base:
        answer = httpx.get(base + "/api/v1/top", timeout=ANSWER_WITHIN)
    assert answer.status_code == 503
    assert answer.json() == {"error": "no downloads have been published yet"}


def test_the_latest_release_comes_from_distribution_metadata(bases: tuple[str, str]) -> None:
    """Uploads' rows went into chDB by publish; the highest final release is the latest."""
    _, on_chdb = bases
    body = httpx.get(on_chdb + "/api/v1/projects/demo-pkg/summary", timeout=ANSWER_WITHIN).json()
    assert (body["latest_version"], body["summary"]) == ("2.0", "The demo package")
