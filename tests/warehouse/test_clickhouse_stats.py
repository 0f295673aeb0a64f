"""Every question ``pythonhosted stats`` and the stats web ask, asked of ClickHouse (chDB)
and of DuckDB after loading the same files into both: the answers must be equal."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pythonhosted.linehaul.batch import convert
from pythonhosted.stats_web import data as duck_data
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.clickhouse import stats as ch
from pythonhosted.warehouse.clickhouse.engines import Engine
from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.stats import FIELDS, Filters, UnknownProject, query_breakdown
from support.clickhouse import KINDS, adapter
from support.linehaul_data import gz
from support.stats_data import random_lines

PROJECTS = ["Demo_Pkg", "demo-pkg", "demo.pkg", "alpha", "beta", "zope.interface", "alpine"]
END = datetime.now(UTC).date() - timedelta(days=1)
FIRST = END - timedelta(days=70)
FILTERS = [Filters(), Filters(mirrors=True), Filters(ci=False), Filters(mirrors=True, ci=False)]


@pytest.fixture(scope="module", params=KINDS)
def engines(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Path, Engine]]:
    """The same files in DuckDB and in chDB, read through each ClickHouse adapter."""
    tmp = tmp_path_factory.mktemp("both")
    rng = random.Random(11)
    files = [
        (
            f"d{n}.json",
            convert(gz(random_lines(rng, 2500, PROJECTS, FIRST, 72, n * 2500))).downloads,
        )
        for n in range(4)
    ]
    duck = DuckDBWarehouse(tmp / "w.duckdb")
    house = ClickHouseWarehouse(adapter(request.param, tmp / "ch"))
    try:
        for file in files:
            duck.load("file_downloads", [file])
            house.load("file_downloads", [file])
    finally:
        duck.close()
    try:
        yield tmp / "w.duckdb", house.engine  # type: ignore[misc]
    finally:
        house.close()


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize(
    "fields",
    [
        [],
        ["day"],
        ["week"],
        ["month"],
        ["installer"],
        ["python"],
        ["version", "country"],
        ["month", "system"],
        ["ci"],
        ["subcommand"],
        *([name] for name in FIELDS),
    ],
)
def test_breakdowns_of_a_project(
    engines: tuple[Path, Engine], fields: list[str], filters: Filters
) -> None:
    path, engine = engines
    for project, start in (("demo-pkg", END - timedelta(days=29)), ("alpha", None)):
        with reading(path) as con:
            expected = query_breakdown(con, project, fields, start, END, None, filters)
        found = ch.query_breakdown(engine, project, fields, start, END, None, filters)
        assert (found.rows, found.total) == (expected.rows, expected.total), (project, fields)


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("fields", [["project"], ["project", "installer"], ["project", "cpu"]])
def test_top_projects(engines: tuple[Path, Engine], fields: list[str], filters: Filters) -> None:
    path, engine = engines
    start = END - timedelta(days=6)
    with reading(path) as con:
        expected = query_breakdown(con, None, fields, start, END, 4, filters)
    found = ch.query_breakdown(engine, None, fields, start, END, 4, filters)
    assert (found.rows, found.total) == (expected.rows, expected.total)


@pytest.mark.parametrize("filters", FILTERS)
def test_the_stats_webs_questions(engines: tuple[Path, Engine], filters: Filters) -> None:
    path, engine = engines
    start = END - timedelta(days=40)
    with reading(path) as con:
        for dimension in ("", "version", "installer", "python", "system", "country"):
            assert ch.series(engine, "demo-pkg", dimension, start, END, filters) == (
                duck_data.series(con, "demo-pkg", dimension, start, END, filters)
            )
        for interval in ("day", "week", "month"):
            dimensions = ["", "version", "python"]
            assert ch.per_period(engine, "alpha", dimensions, interval, start, END, filters) == (
                duck_data.per_period(con, "alpha", dimensions, interval, start, END, filters)
            )
        assert ch.recent(engine, "beta", END, filters) == duck_data.recent(
            con, "beta", END, filters
        )
        assert ch.summary(engine, "zope-interface", END, filters) == (
            duck_data.summary(con, "zope-interface", END, filters)
        )
        assert ch.top(engine, 30, END, 5, filters) == duck_data.top(con, 30, END, 5, filters)
        assert ch.trending(engine, END, 1, 10, filters) == duck_data.trending(
            con, END, 1, 10, filters
        )
        assert ch.overall(engine, "demo-pkg", None, END) == duck_data.overall(
            con, "demo-pkg", None, END
        )
        assert ch.overall(engine, "demo-pkg", start, END - timedelta(days=3)) == (
            duck_data.overall(con, "demo-pkg", start, END - timedelta(days=3))
        )
        for prefix in ("al", "demo", "", "zz", "it's"):
            assert ch.search(engine, prefix, 10) == duck_data.search(con, prefix, 10)
        assert ch.summary(engine, "nothing", END, filters)["total"] == 0


def test_unknown_projects_and_close_names(engines: tuple[Path, Engine]) -> None:
    _, engine = engines
    assert ch.check_project(engine, "Demo.Pkg") == "demo-pkg"
    with pytest.raises(UnknownProject) as unknown:
        ch.check_project(engine, "alpah")
    assert str(unknown.value) == "no downloads were recorded for 'alpah' (did you mean alpha?)"
    # hostile names are parameters, never SQL
    with pytest.raises(UnknownProject):
        ch.check_project(engine, "x'; DROP TABLE file_downloads; --\\\t\n")
    assert ch.data_version(engine)[0] == 4
