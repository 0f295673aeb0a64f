"""Every question ``pythonhosted stats`` and the stats web ask, asked of ClickHouse (chDB)
and of DuckDB after loading the same files into both: the answers must be equal. The
downloads come after our edge's served lines (whole files, ranges from byte 0, ranges
elsewhere that are no download), and ``distribution_metadata`` holds rows for some of the
downloaded files (Requires-Python, authors)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pythonhosted.catalog import FileRecord
from pythonhosted.linehaul.batch import convert
from pythonhosted.stats_web import data as duck_data
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.clickhouse import stats as ch
from pythonhosted.warehouse.clickhouse.engines import Engine
from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.groups import Group, group_projects
from pythonhosted.warehouse.metadata import metadata_row, row_json
from pythonhosted.warehouse.stats import FIELDS, Filters, UnknownProject, query_breakdown
from pythonhosted.warehouse.suggestions import LONGEST
from support.clickhouse import KINDS, adapter
from support.linehaul_data import gz
from support.stats_data import random_lines

# On one test worker (`make test` distributes by group): the warehouses are loaded once.
pytestmark = pytest.mark.xdist_group("clickhouse_stats")
PROJECTS = ["Demo_Pkg", "demo-pkg", "demo.pkg", "alpha", "beta", "zope.interface", "alpine"]
END = datetime.now(UTC).date() - timedelta(days=1)
FIRST = END - timedelta(days=70)
FILTERS = [Filters(), Filters(mirrors=True), Filters(ci=False), Filters(mirrors=True, ci=False)]
AUTHORS = {"alpha": "Jane Doe", "beta": "Jane Doe", "alpine": "Bob <bob@example.org>"}


def _distributions(rng: random.Random) -> list[bytes]:
    """Rows for versions 1.0 and 2.0 of each project (1.1 has none: its downloads'
    Requires-Python is null), as uploads make them."""
    rows = []
    for index, project in enumerate(PROJECTS):
        for version in ("1.0", "2.0"):
            filename = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
            lines = ["Metadata-Version: 2.1", f"Name: {project}", f"Version: {version}"]
            requires = rng.choice([">=3.8", ">=3.10", None])
            lines += [f"Requires-Python: {requires}"] if requires else []
            lines += [f"Author: {AUTHORS[project]}"] if project in AUTHORS else []
            lines += [f"Summary: {project} {version}"]
            record = FileRecord(
                filename=filename,
                path=f"/packages/aa/bb/{filename}",
                project=project,
                version=version,
                package_type="bdist_wheel",
                python_version="py3",
                size=len(filename),
                sha256="0" * 64,
                blake2b_256="1" * 64,
                upload_time=f"2024-01-{10 + 2 * index + (version == '2.0')}T00:00:00.123456Z",
                md5="2" * 32,
                uploaded_via="test",
            )
            metadata = ("\n".join(lines) + "\n\n").encode()
            rows.append(row_json(metadata_row(record, metadata, "2" * 32)))
    return rows


Loaded = tuple[Path, list[tuple[str, bytes]], list[bytes]]


def _add_distributions(warehouse: DuckDBWarehouse | ClickHouseWarehouse, rows: list[bytes]) -> None:
    """Rows added in two batches that overlap, then all again: each stored once."""
    assert len(warehouse.add_distributions(rows[:5] * 2)) == 5
    assert len(warehouse.add_distributions(rows)) == len(rows) - 5
    assert warehouse.add_distributions(rows) == []


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """The downloads files and distribution rows, and DuckDB loaded with them: made once for
    both ClickHouse adapters."""
    tmp = tmp_path_factory.mktemp("duck")
    rng = random.Random(11)
    files = [
        (
            f"d{n}.json",
            convert(gz(random_lines(rng, 2500, PROJECTS, FIRST, 72, n * 2500, True))).downloads,
        )
        for n in range(4)
    ]
    distributions = _distributions(rng)
    duck = DuckDBWarehouse(tmp / "w.duckdb")
    try:
        for file in files:
            duck.load("file_downloads", [file])
        _add_distributions(duck, distributions)
    finally:
        duck.close()
    return tmp / "w.duckdb", files, distributions


class DuckAnswers:
    """DuckDB's answers, each asked once for both ClickHouse adapters: the file is loaded
    once and never written after, so an answer cannot change between them. Asking twice,
    opening the file for every question, was a fifth of the module's CPU (20.2 s, now 16.3)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, Any] = {}

    def __call__(self, question: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        key = repr((question.__module__, question.__qualname__, args, sorted(kwargs.items())))
        if key not in self.answers:
            with reading(self.path) as con:
                self.answers[key] = question(con, *args, **kwargs)
        return self.answers[key]


@pytest.fixture(scope="module")
def duck(loaded: Loaded) -> DuckAnswers:
    return DuckAnswers(loaded[0])


@pytest.fixture(scope="module", params=KINDS)
def engine(
    loaded: Loaded, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Engine]:
    """The same files as in DuckDB, in chDB, read through each ClickHouse adapter."""
    _, files, distributions = loaded
    house = ClickHouseWarehouse(adapter(request.param, tmp_path_factory.mktemp("ch")))
    try:
        for file in files:
            house.load("file_downloads", [file])
        _add_distributions(house, distributions)
        yield house.engine
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
    engine: Engine, duck: DuckAnswers, fields: list[str], filters: Filters
) -> None:
    for project, start in (("demo-pkg", END - timedelta(days=29)), ("alpha", None)):
        expected = duck(query_breakdown, project, fields, start, END, None, filters)
        found = ch.query_breakdown(engine, project, fields, start, END, None, filters)
        assert (found.rows, found.total) == (expected.rows, expected.total), (project, fields)


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("fields", [["project"], ["project", "installer"], ["project", "cpu"]])
def test_top_projects(
    engine: Engine, duck: DuckAnswers, fields: list[str], filters: Filters
) -> None:
    start = END - timedelta(days=6)
    expected = duck(query_breakdown, None, fields, start, END, 4, filters)
    found = ch.query_breakdown(engine, None, fields, start, END, 4, filters)
    assert (found.rows, found.total) == (expected.rows, expected.total)


@pytest.mark.parametrize("filters", FILTERS)
def test_the_stats_webs_questions(engine: Engine, duck: DuckAnswers, filters: Filters) -> None:
    start = END - timedelta(days=40)
    for dimension, kind in [
        *((name, "value") for name in ("", "version", "installer", "python", "system", "country")),
        ("python", "major"),
        ("system", "system"),
    ]:
        for fold in ({"named": None}, {"named": 2}, {"wanted": "3.12"}, {"wanted": "linux"}):
            question = ("demo-pkg", dimension, kind, start, END, filters)
            assert sorted(ch.categories(engine, *question, **fold)) == (  # type: ignore[arg-type]
                sorted(duck(duck_data.categories, *question, **fold))
            ), (dimension, kind, fold)
    for interval, leaders, rows in (("day", 5, 100), ("week", 1, 2), ("month", 2, 1)):
        question = (["", "version", "python"], interval, start, END, filters, leaders, rows)
        assert ch.breakdowns(engine, "alpha", *question) == (
            duck(duck_data.breakdowns, "alpha", *question)
        )
    assert ch.recent(engine, "beta", END, filters) == duck(duck_data.recent, "beta", END, filters)
    for project in ("zope-interface", "demo-pkg", "nothing"):
        assert duck_data.summary(engine, project, END, filters) == (
            duck(duck_data.summary, project, END, filters)
        )
    assert ch.top(engine, 30, END, 5, filters) == duck(duck_data.top, 30, END, 5, filters)
    assert ch.trending(engine, END, 1, 10, filters) == duck(duck_data.trending, END, 1, 10, filters)
    assert ch.overall(engine, "demo-pkg", None, END) == duck(
        duck_data.overall, "demo-pkg", None, END
    )
    assert ch.overall(engine, "demo-pkg", start, END - timedelta(days=3)) == (
        duck(duck_data.overall, "demo-pkg", start, END - timedelta(days=3))
    )
    for prefix in ("al", "demo", "", "zz", "it's"):
        assert ch.search(engine, prefix, 10) == duck(duck_data.search, prefix, 10)
    assert ch.summary(engine, "nothing", END, filters)["total"] == 0
    for project in ("demo-pkg", "alpha", "nothing"):
        assert duck_data.latest_release(engine, project) == (
            duck(duck_data.latest_release, project)
        )
    # Demo_Pkg, demo-pkg and demo.pkg are one project; demo.pkg's 2.0 came last
    assert duck_data.latest_release(engine, "demo-pkg") == {
        "version": "2.0",
        "summary": "demo.pkg 2.0",
    }


@pytest.mark.parametrize("filters", FILTERS[:2])
@pytest.mark.parametrize(
    "fields",
    [[], ["day"], ["status"], ["requires-python"], ["month", "installer"], ["project"]],
)
def test_bytes_sent(engine: Engine, duck: DuckAnswers, fields: list[str], filters: Filters) -> None:
    """--bytes: the rows read, every response's bytes beside the downloads among them."""
    start = END - timedelta(days=29)
    for project in ("demo-pkg", "alpha", None):
        if project is None and fields != ["project"]:
            continue
        expected = duck(query_breakdown, project, fields, start, END, 5, filters, with_bytes=True)
        found = ch.query_breakdown(engine, project, fields, start, END, 5, filters, with_bytes=True)
        assert (found.rows, found.total, found.total_bytes) == (
            expected.rows,
            expected.total,
            expected.total_bytes,
        )
        assert found.total_bytes


@pytest.mark.parametrize(
    "fields", [[], ["project"], ["project", "version"], ["installer"], ["requires-python"]]
)
@pytest.mark.parametrize("with_bytes", [False, True])
def test_totals_over_a_group(
    engine: Engine, duck: DuckAnswers, fields: list[str], with_bytes: bool
) -> None:
    """A group's projects (``--author``/``--maintainer``/``--org``), found in each
    engine's distribution_metadata, and the downloads over them."""
    group = Group("author", "jane doe")
    among = ch.group_projects(engine, group)
    assert among == duck(group_projects, group) == ["alpha", "beta"]
    for org in ("example.org", "nowhere.example"):
        assert ch.group_projects(engine, Group("org", org)) == (
            duck(group_projects, Group("org", org))
        )
    expected = duck(
        query_breakdown, None, fields, None, END, None, among=among, with_bytes=with_bytes
    )
    found = ch.query_breakdown(
        engine, None, fields, None, END, None, among=among, with_bytes=with_bytes
    )
    assert (found.rows, found.total, found.total_bytes) == (
        expected.rows,
        expected.total,
        expected.total_bytes,
    )
    assert found.total


def test_unknown_projects_and_close_names(engine: Engine) -> None:
    assert ch.check_project(engine, "Demo.Pkg") == "demo-pkg"
    with pytest.raises(UnknownProject) as unknown:
        ch.check_project(engine, "alpah")
    assert str(unknown.value) == "no downloads were recorded for 'alpah' (did you mean alpha?)"
    # hostile names are parameters, never SQL
    with pytest.raises(UnknownProject):
        ch.check_project(engine, "x'; DROP TABLE file_downloads; --\\\t\n")
    # Past suggestions.LONGEST characters no suggestions are looked for, as in DuckDB:
    # Jaro-Winkler with every name cost 2.7 s for a name of 7,000 characters at 100,000 names.
    asked: list[str] = []

    def rows(sql: str, params: dict[str, object]) -> list[tuple[object, ...]]:
        asked.append(sql)
        return engine.rows(sql, params)

    spy = cast(Engine, SimpleNamespace(rows=rows))
    assert ch.close_names(spy, "alpah" + "x" * (LONGEST - 4)) == []
    assert asked == []
    assert ch.close_names(spy, "alpah") == ["alpha"]
    assert ch.data_version(engine)[0] == 6  # four files, two batches of distributions
