"""The BigQuery back end against bqemulator (a BigQuery emulator on DuckDB, on loopback):
tables made by our load jobs with our schema, rows loaded, and the rollups' materialized
views and a stats query in GoogleSQL answered as DuckDB answers them for the same files.

The emulator is not BigQuery (``support/bqemulator.py`` lists where it differs); exactly-once
by job IDs (a repeated ID is a 409) is tested against the named fake (test_bigquery.py).

google-cloud-bigquery imports pandas (about a second of CPU), so the tests import the back end
in their bodies: every pytest worker collects this module, only the one that runs a test pays.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pytest

from pythonhosted.linehaul.batch import convert
from pythonhosted.warehouse import rollups
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.schema import TABLES, bigquery_fields
from pythonhosted.warehouse.stats import Filters, query_breakdown
from support.bqemulator import emulator_client, emulator_rows
from support.distribution_rows import distribution_row
from support.fake_bigquery import schema_mismatch
from support.linehaul_data import gz
from support.stats_data import random_lines
from warehouse.conftest import PROJECT

if TYPE_CHECKING:
    from google.cloud import bigquery

# On one pytest worker: each worker that ran one of them started an emulator (and imported
# pandas) of its own, ~3 s of CPU each.
pytestmark = pytest.mark.xdist_group("bqemulator")

PROJECTS = ["Demo_Pkg", "demo-pkg", "alpha", "zope.interface"]
_datasets = itertools.count()


@pytest.fixture
def client(bqemulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[bigquery.Client]:
    made = emulator_client(bqemulator, PROJECT, monkeypatch)
    try:
        yield made
    finally:
        made.close()  # type: ignore[no-untyped-call]


def _dataset(client: bigquery.Client) -> str:
    name = f"ds{next(_datasets)}_{id(client)}"
    client.create_dataset(f"{PROJECT}.{name}")
    return name


def _files(seed: int, count: int = 3, lines: int = 1500) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    made = []
    for n in range(count):
        rows = random_lines(rng, lines, PROJECTS, date(2024, 12, 1), 30, n * lines, True)
        made.append((f"processed/2024/downloads-{n}.json", convert(gz(rows)).downloads))
    return made


def test_load_jobs_make_the_tables_with_our_schema(client: bigquery.Client) -> None:
    from pythonhosted.warehouse.bigquery import BigQueryWarehouse

    dataset = _dataset(client)
    warehouse = BigQueryWarehouse(client, PROJECT, [dataset])
    simple = b'{"timestamp":"2024-12-01 10:00:00","url":"/simple/a/","project":"a"}\n' * 2
    assert warehouse.load("simple_requests", [("processed/s.json", simple)]).rows == 2
    files = [(name, emulator_rows(data)) for name, data in _files(1, count=2)]
    for index, file in enumerate(files):
        result = warehouse.load("file_downloads", [file])
        assert (result.rows, result.loaded) == (
            1500 * (index + 1),
            [file[0]],
        )  # outputRows: see support
    rows = [emulator_rows(distribution_row(n)) for n in range(3)]
    assert warehouse.add_distributions(rows[:2]) == ["demo-0.0.tar.gz", "demo-1.0.tar.gz"]
    assert warehouse.add_distributions(rows) == ["demo-2.0.tar.gz"]  # the others are there
    assert warehouse.distribution_files() == {f"demo-{n}.0.tar.gz" for n in range(3)}
    for table in TABLES:
        made = client.get_table(f"{PROJECT}.{dataset}.{table}")
        fields = [field.to_api_repr() for field in made.schema]
        ours = bigquery_fields(TABLES[table])
        assert schema_mismatch(fields, ours) is None and schema_mismatch(ours, fields) is None
    ((count,),) = client.query(f"SELECT COUNT(*) FROM `{PROJECT}.{dataset}.file_downloads`")
    assert count == 3000


def _duckdb_rollups(path: Path, dimension: str) -> set[tuple[object, ...]]:
    """What DuckDB's readers see: the settled days' rollups and the open days' rows."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        source, params = rollups.daily(con, dimensions=["" if dimension == "total" else dimension])
        rows = con.execute(
            f"SELECT day, project, mirror, ci, value, sum(downloads)::BIGINT FROM ({source}) "
            "GROUP BY ALL",
            params,
        ).fetchall()
    finally:
        con.close()
    return {(*row[:4], "" if dimension == "total" else row[4], row[5]) for row in rows}


def test_rollup_views_and_stats_queries_answer_as_duckdb(
    client: bigquery.Client, tmp_path: Path
) -> None:
    """The same files into DuckDB and the emulator: each materialized view (GoogleSQL, made
    by the back end after its first load) holds DuckDB's rollups of that dimension, and a
    pypinfo-style query gives ``stats --by installer``'s rows. Our edge's ranges that are no
    download are among the rows, left out of both."""
    from pythonhosted.warehouse.bigquery import ROLLUP_DIMENSIONS, BigQueryWarehouse

    dataset = _dataset(client)
    files = _files(2)
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        duck.load("file_downloads", files)
    finally:
        duck.close()
    warehouse = BigQueryWarehouse(client, PROJECT, [dataset])
    warehouse.load("file_downloads", [(name, emulator_rows(data)) for name, data in files])
    for dimension in ROLLUP_DIMENSIONS:
        view = f"`{PROJECT}.{dataset}.download_rollups_{dimension}`"
        found = {
            tuple(row.values())
            for row in client.query(
                f"SELECT day, project, mirror, ci, value, downloads FROM {view}"
            )
        }
        assert found == _duckdb_rollups(tmp_path / "w.duckdb", dimension), dimension
    rows = client.query(
        "SELECT details.installer.name AS installer, COUNT(*) AS download_count "
        f"FROM `{PROJECT}.{dataset}.file_downloads` "
        "WHERE LOWER(REGEXP_REPLACE(project, r'[-_.]+', '-')) = 'demo-pkg' "
        "AND DATE(timestamp) BETWEEN DATE_SUB(DATE '2024-12-30', INTERVAL 29 DAY) "
        f"AND DATE '2024-12-30' AND {rollups.COUNTED} "
        "GROUP BY installer ORDER BY download_count DESC, installer"
    )
    with reading(tmp_path / "w.duckdb") as con:
        expected = query_breakdown(
            con,
            "demo-pkg",
            ["installer"],
            date(2024, 12, 1),
            date(2024, 12, 30),
            None,
            Filters(mirrors=True),
        )
    assert [tuple(row.values()) for row in rows] == expected.rows
