"""The DuckDB warehouse file: tables in the BigQuery schema, exactly-once loads, Parquet."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import duckdb
import pytest

from pythonhosted.linehaul.batch import convert
from pythonhosted.storage import open_store
from pythonhosted.warehouse import LocalFile, duck, open_warehouse
from pythonhosted.warehouse.duck import LOADED, DuckDBWarehouse, column_type
from pythonhosted.warehouse.schema import DETAILS, FILE_DOWNLOADS
from support.linehaul_data import download_line, gz, simple_line


def test_tables_follow_the_schema(tmp_path: Path) -> None:
    DuckDBWarehouse(tmp_path / "w.duckdb").close()
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    columns = con.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'file_downloads' ORDER BY ordinal_position"
    ).fetchall()
    con.close()
    assert [name for name, _, _ in columns] == [field.name for field in FILE_DOWNLOADS]
    nullable = {name: flag == "YES" for name, _, flag in columns}
    assert nullable == {field.name: field.mode == "NULLABLE" for field in FILE_DOWNLOADS}
    details = dict((name, kind) for name, kind, _ in columns)["details"]
    assert details.replace('"', "") == column_type(DETAILS).replace('"', "")
    assert details.startswith("STRUCT(installer STRUCT(")


def test_rows_round_trip_and_load_once(tmp_path: Path) -> None:
    converted = convert(gz([download_line(1), simple_line(2)]))
    warehouse = open_warehouse(f"duckdb://{tmp_path}/w.duckdb")
    first = warehouse.load("file_downloads", [("d.json", converted.downloads)])
    again = warehouse.load("file_downloads", [("d.json", converted.downloads)])
    warehouse.load("simple_requests", [("s.json", converted.simple)])
    warehouse.close()
    assert (first.rows, first.loaded, again.rows, again.skipped) == (1, ["d.json"], 0, ["d.json"])
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    row = con.execute(
        "SELECT strftime(timestamp, '%Y-%m-%d %H:%M:%S'), file.filename, details.installer.name,"
        " details.ci FROM file_downloads"
    ).fetchone()
    assert row == ("2021-01-07 20:54:54", "demo-1.0-py3-none-any.whl", "pip", None)
    assert con.execute("SELECT project FROM simple_requests").fetchall() == [("demo",)]
    loaded = con.execute("SELECT name, table_name, rows FROM linehaul_loaded_files ORDER BY 1")
    assert loaded.fetchall() == [("d.json", "file_downloads", 1), ("s.json", "simple_requests", 1)]
    con.close()


def test_a_large_load_stores_every_row_once(tmp_path: Path) -> None:
    """Rows spanning several read buffers and both threads, stored unordered, all arrive."""
    per_file = 40_000
    files = [
        (f"d{n}.json", convert(gz([download_line(i) for i in range(n, 3 * per_file, 3)])).downloads)
        for n in range(3)
    ]
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    result = warehouse.load("file_downloads", files)
    counts = warehouse.con.execute(
        "SELECT count(*), count(DISTINCT url), count(details.installer.name) FROM file_downloads"
    ).fetchone()
    loaded = warehouse.con.execute(f"SELECT sum(rows) FROM {LOADED}").fetchone()
    warehouse.close()
    assert result.rows == 3 * per_file
    assert counts == (3 * per_file, 3 * per_file, 3 * per_file)
    assert loaded == (3 * per_file,)


def test_the_bookkeeping_records_each_files_own_rows(tmp_path: Path) -> None:
    """Rows per file, not a share of the total; a last line without its newline counts."""
    sizes = {"a.json": 3, "b.json": 1, "c.json": 5, "d.json": 2}
    files = []
    for serial, (name, size) in enumerate(sizes.items()):
        lines = [download_line(100 * serial + i) for i in range(size)]
        files.append((name, convert(gz(lines)).downloads))
    files[2] = ("c.json", files[2][1].rstrip(b"\n"))  # not the last: the spool must add one
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    result = warehouse.load("file_downloads", files)
    loaded = warehouse.con.execute(f"SELECT name, rows FROM {LOADED} ORDER BY name").fetchall()
    stored = warehouse.con.execute("SELECT count(DISTINCT url) FROM file_downloads").fetchone()
    warehouse.close()
    assert loaded == list(sizes.items())
    assert result.rows == sum(sizes.values())
    assert stored == (sum(sizes.values()),)


def test_a_load_survives_short_writes_of_its_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool is written with few buffers a call and a few bytes at a time (as a kernel may
    do), and still every row arrives once."""
    writev = os.writev
    calls: list[int] = []

    def short(fd: int, buffers: list[memoryview]) -> int:
        calls.append(len(buffers))
        return writev(fd, [bytes(buffers[0][:3])])

    monkeypatch.setattr(duck, "_IOV_MAX", 2)
    monkeypatch.setattr(duck.os, "writev", short)
    files = [
        (f"{n}.json", convert(gz([download_line(10 * n + i) for i in range(n)])).downloads)
        for n in range(4)  # the first one empty
    ]
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    result = warehouse.load("file_downloads", files)
    stored = warehouse.con.execute("SELECT count(*), count(DISTINCT url) FROM file_downloads")
    counts = stored.fetchone()
    warehouse.close()
    assert result.rows == 6 and counts == (6, 6)
    assert max(calls) == 2 and len(calls) > 100


def test_a_failed_load_leaves_nothing(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    good = convert(gz([download_line(1)])).downloads
    with pytest.raises(duckdb.Error):
        warehouse.load("file_downloads", [("good.json", good), ("bad.json", b"{oops\n")])
    assert warehouse.con.execute("SELECT count(*) FROM linehaul_loaded_files").fetchone() == (0,)
    assert warehouse.con.execute("SELECT count(*) FROM file_downloads").fetchone() == (0,)
    warehouse.close()


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_parquet_export(tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    from click.testing import CliRunner

    from pythonhosted.cli import main

    path = tmp_path / "w.duckdb"
    warehouse = DuckDBWarehouse(path)
    lines = [download_line(1), download_line(2, when=1_610_100_000), simple_line(3)]
    converted = convert(gz(lines))
    warehouse.load("file_downloads", [("d.json", converted.downloads)])
    warehouse.load("simple_requests", [("s.json", converted.simple)])
    warehouse.close()
    url = f"file://{tmp_path}/export" if kind == "file" else request.getfixturevalue("s3_url")
    store = open_store(url)
    asyncio.run(store.put("file_downloads/date=1999-01-01/data_0.parquet", b"stale"))
    out = CliRunner().invoke(
        main, ["linehaul", "export", "--warehouse", f"duckdb://{path}", "--to", url]
    )
    assert out.exit_code == 0, out.output
    assert "linehaul export: 3 Parquet objects" in out.stderr
    keys = [item.key for item in asyncio.run(store.list())]
    assert keys == [
        "file_downloads/date=2021-01-07/data_0.parquet",
        "file_downloads/date=2021-01-08/data_0.parquet",
        "simple_requests/date=2021-01-07/data_0.parquet",
    ]
    local = tmp_path / "copy"
    for key in keys:
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(asyncio.run(store.get_bytes(key)))
    con = duckdb.connect()
    found = con.execute(
        "SELECT CAST(date AS VARCHAR), file.filename FROM "
        f"read_parquet('{local}/file_downloads/*/*.parquet', hive_partitioning = true) ORDER BY 1"
    ).fetchall()
    assert found == [
        ("2021-01-07", "demo-1.0-py3-none-any.whl"),
        ("2021-01-08", "demo-1.0-py3-none-any.whl"),
    ]


def _local_files(tmp_path: Path, sizes: dict[str, int]) -> list[LocalFile]:
    """Result files on disk, with their true row counts as hints."""
    files = []
    for serial, (name, size) in enumerate(sizes.items()):
        path = tmp_path / name
        path.write_bytes(
            convert(gz([download_line(100 * serial + i) for i in range(size)])).downloads
        )
        files.append(LocalFile(f"processed/20210107/{name}", path, size))
    return files


def _bookkeeping(warehouse: DuckDBWarehouse) -> list[tuple[str, int]]:
    rows = warehouse.con.execute(f"SELECT name, rows FROM {LOADED} ORDER BY name").fetchall()
    return [(name.rsplit("/", 1)[1], count) for name, count in rows]


def test_local_files_load_in_place_with_their_writers_counts(tmp_path: Path) -> None:
    sizes = {"a.json": 3, "b[1].json": 2, "c.json": 4}  # a glob character goes by the spool
    files = _local_files(tmp_path, sizes)
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    result = warehouse.load_local("file_downloads", files)
    again = warehouse.load_local("file_downloads", files[:1])
    stored = warehouse.con.execute("SELECT count(DISTINCT url) FROM file_downloads").fetchone()
    assert (result.rows, len(result.loaded), again.skipped) == (9, 3, [files[0].name])
    assert stored == (9,)
    assert _bookkeeping(warehouse) == sorted(sizes.items())
    warehouse.close()


def test_local_files_are_counted_when_hints_are_missing_or_wrong(tmp_path: Path) -> None:
    """A hint is only taken when the hints add up to the rows DuckDB inserted."""
    sizes = {"a.json": 3, "b.json": 2}
    for hints in ([None, 2], [3, 5]):
        files = [
            LocalFile(file.name, file.path, hint)
            for file, hint in zip(_local_files(tmp_path, sizes), hints, strict=True)
        ]
        warehouse = DuckDBWarehouse(tmp_path / f"w-{hints[0]}.duckdb")
        assert warehouse.load_local("file_downloads", files).rows == 5
        assert _bookkeeping(warehouse) == sorted(sizes.items())
        warehouse.close()


def test_a_bad_local_file_leaves_nothing(tmp_path: Path) -> None:
    files = _local_files(tmp_path, {"good.json": 2})
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{oops\n")
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    with pytest.raises(duckdb.Error):
        warehouse.load_local("file_downloads", [*files, LocalFile("bad.json", bad, 1)])
    assert warehouse.con.execute("SELECT count(*) FROM file_downloads").fetchone() == (0,)
    assert _bookkeeping(warehouse) == []
    warehouse.close()
