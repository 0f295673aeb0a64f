"""Parquet out of and into ClickHouse (chDB) through the CLI: a DuckDB warehouse exported and
imported into ClickHouse gives the same stats; ClickHouse's export reads back in DuckDB as
the same rows; an import twice loads each file once; rollups rebuilt. All three tables, our
edge's response facts and distribution_metadata's lists included."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.linehaul.batch import convert
from pythonhosted.warehouse.base import WarehouseError
from pythonhosted.warehouse.clickhouse import load
from pythonhosted.warehouse.clickhouse.engines import ChdbEngine
from pythonhosted.warehouse.duck import DuckDBWarehouse
from support.distribution_rows import distribution_row
from support.linehaul_data import gz
from support.stats_data import random_lines

COLUMNS = (
    "timestamp, country_code, url, project, file.version, details.installer.name, "
    "details.python, details.system.name, details.distro.libc.lib, details.ci, tls_cipher, "
    "response.status, response.bytes_sent, response.range_requested, response.range_start"
)


def _run(*args: str) -> str:
    out = CliRunner().invoke(main, list(args))
    assert out.exit_code == 0, out.output
    return out.stderr


def _duckdb_rows(glob: str, columns: str = COLUMNS, order: str = "url") -> list[tuple[object, ...]]:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(
            f"SELECT {columns.replace('timestamp', 'timestamp::TIMESTAMP')} "
            f"FROM read_parquet('{glob}') ORDER BY {order}"
        ).fetchall()


def _export_duckdb(tmp_path: Path, folder: str) -> None:
    """``tmp_path/w.duckdb`` exported into the directory store ``tmp_path/folder``."""
    _run(
        "linehaul",
        "export",
        "--warehouse",
        f"duckdb://{tmp_path}/w.duckdb",
        "--to",
        f"file://{tmp_path}/{folder}",
    )


def test_duckdb_to_clickhouse_and_back(tmp_path: Path) -> None:
    rng = random.Random(4)
    lines = random_lines(rng, 3000, ["alpha", "Beta.pkg"], date(2024, 12, 1), 5, with_served=True)
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        duck.load("file_downloads", [("a.json", convert(gz(lines)).downloads)])
        simple = b'{"timestamp":"2024-12-02 10:00:00 +00:00","url":"/simple/a/","project":"a"}\n'
        duck.load("simple_requests", [("s.json", simple)])
        duck.add_distributions([distribution_row(n) for n in range(2)])
    finally:
        duck.close()
    _export_duckdb(tmp_path, "from-duck")
    chdb = f"chdb://{tmp_path}/ch"
    first = _run(
        "linehaul", "import", "--from", f"file://{tmp_path}/from-duck", "--warehouse", chdb
    )
    assert "linehaul import: 8 files, 3003 rows, 0 already loaded" in first
    again = _run(
        "linehaul", "import", "--from", f"file://{tmp_path}/from-duck", "--warehouse", chdb
    )
    assert "linehaul import: 0 files, 0 rows, 8 already loaded" in again
    _run("linehaul", "rollup", "--rebuild", "--warehouse", chdb)
    stats = ["stats", "beta-pkg", "--start", "2024-12-01", "--end", "2024-12-05", "--format", "csv"]
    for by in (
        ["--by", "installer"],
        ["--by", "day", "libc"],
        ["--by", "status", "--bytes"],
        ["--by", "requires-python"],
    ):
        on_duck = _run(*stats, *by, "--warehouse", f"duckdb://{tmp_path}/w.duckdb")
        out = CliRunner().invoke(main, [*stats, *by, "--warehouse", chdb])
        assert (
            out.stdout
            == CliRunner()
            .invoke(main, [*stats, *by, "--warehouse", f"duckdb://{tmp_path}/w.duckdb"])
            .stdout
        )
        assert on_duck == ""
    _run("linehaul", "export", "--warehouse", chdb, "--to", f"file://{tmp_path}/from-ch")
    for table in ("file_downloads", "simple_requests", "distribution_metadata"):
        days = sorted(p.parent.name for p in (tmp_path / "from-ch" / table).rglob("*.parquet"))
        assert days == sorted(
            p.parent.name for p in (tmp_path / "from-duck" / table).rglob("*.parquet")
        )
    assert _duckdb_rows(f"{tmp_path}/from-ch/file_downloads/*/*.parquet") == _duckdb_rows(
        f"{tmp_path}/from-duck/file_downloads/*/*.parquet"
    )
    every = "* REPLACE (upload_time::TIMESTAMP AS upload_time)"
    assert _duckdb_rows(
        f"{tmp_path}/from-ch/distribution_metadata/*/*.parquet", every, "filename"
    ) == _duckdb_rows(f"{tmp_path}/from-duck/distribution_metadata/*/*.parquet", every, "filename")
    engine = ChdbEngine(tmp_path / "ch")
    try:
        assert engine.rows("SELECT count() FROM simple_requests") == [(1,)]
    finally:
        engine.close()


def test_a_large_file_goes_in_by_parts_and_a_retry_adds_each_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of 7,000 rows with parts of 2,048 (DuckDB cuts row groups at multiples of its
    2,048-row vectors): four inserts. The import fails at the third (the first two parts are
    in, the file is not booked); the retry cuts the same parts, the first two are dropped by
    their tokens, and every row is there once."""
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    duck.close()
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute(
            "INSERT INTO file_downloads BY NAME SELECT TIMESTAMP '2026-11-01' + "
            "to_seconds(i) AS \"timestamp\", '/p/' || i AS url, 'demo' AS project "
            "FROM range(7000) t(i)"
        )
    _export_duckdb(tmp_path, "out")
    monkeypatch.setattr(load, "PARQUET_PART_ROWS", 2048)
    chdb = f"chdb://{tmp_path}/ch"
    inserted = ChdbEngine.insert
    calls: list[str] = []

    def insert_failing_at_the_third(self: ChdbEngine, sql: str, source: Path | bytes) -> None:
        calls.append(sql)
        if len(calls) == 3:
            raise WarehouseError("the machine went away")
        inserted(self, sql, source)

    monkeypatch.setattr(ChdbEngine, "insert", insert_failing_at_the_third)
    failed = CliRunner().invoke(
        main, ["linehaul", "import", "--from", f"file://{tmp_path}/out", "--warehouse", chdb]
    )
    assert failed.exit_code == 1
    assert "the machine went away" in failed.stderr
    monkeypatch.setattr(ChdbEngine, "insert", inserted)

    def counted() -> list[tuple[object, ...]]:
        engine = ChdbEngine(tmp_path / "ch")
        try:
            return engine.rows("SELECT count(), uniqExact(url) FROM file_downloads")
        finally:
            engine.close()

    assert counted() == [(4096, 4096)]
    out = _run("linehaul", "import", "--from", f"file://{tmp_path}/out", "--warehouse", chdb)
    assert "linehaul import: 1 files, 7000 rows, 0 already loaded" in out
    assert len(calls) == 3
    assert counted() == [(7000, 7000)]
