"""The DuckDB warehouse file: tables in the BigQuery schema, exactly-once loads, Parquet."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import cast

import duckdb
import pytest

from pythonhosted.catalog import FileRecord
from pythonhosted.distributions import core_metadata, parse_filename
from pythonhosted.linehaul.batch import convert
from pythonhosted.samples import build_sdist
from pythonhosted.storage import open_store
from pythonhosted.warehouse import LocalFile, duck, open_warehouse
from pythonhosted.warehouse.duck import LOADED, DuckDBWarehouse, column_type
from pythonhosted.warehouse.metadata import metadata_row, row_json
from pythonhosted.warehouse.schema import DETAILS, FILE_DOWNLOADS
from support.linehaul_data import download_line, gz, simple_line
from support.scanned import Scanned

SDIST = build_sdist("demo", "1.0", requires=["requests>=2"], metadata=["Classifier: Topic :: Demo"])
SDIST_NAME = SDIST[0]
UPLOADED = "2026-03-04T05:06:07.123456Z"


def _distribution_row(tmp_path: Path, uploaded: str = UPLOADED) -> bytes:
    """The distribution_metadata row of the sample sdist."""
    record = FileRecord(
        filename=SDIST_NAME,
        path=f"/packages/aa/bb/{'c' * 60}/{SDIST_NAME}",
        project="demo",
        version="1.0",
        package_type="sdist",
        python_version="source",
        size=len(SDIST[1]),
        sha256="0" * 64,
        blake2b_256="1" * 64,
        upload_time=uploaded,
        md5="2" * 32,
    )
    metadata = core_metadata(io.BytesIO(SDIST[1]), parse_filename(SDIST_NAME))
    return row_json(metadata_row(record, metadata, "2" * 32))


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


def _statements(warehouse: DuckDBWarehouse, load: list[tuple[str, bytes]]) -> int:
    """Statements DuckDB ran for one load (its own query log: ``executemany`` runs one per
    row)."""
    con = warehouse.con
    con.execute("CALL truncate_duckdb_logs()")
    warehouse.load("file_downloads", load)
    found = con.execute("SELECT count(*) FROM duckdb_logs WHERE type = 'QueryLog'").fetchone()
    assert found is not None
    return int(found[0])


def test_a_loads_statements_do_not_grow_with_its_files(tmp_path: Path) -> None:
    """Many small result files at once (thousands of tiny log objects) cost a load one
    bookkeeping statement, not one per file."""
    tiny = [
        (f"processed/20210107/downloads-{n}.json", convert(gz([download_line(n)])).downloads)
        for n in range(303)
    ]
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        warehouse.load("file_downloads", tiny[:1])  # the first load sets the rollups up
        warehouse.con.execute("CALL enable_logging('QueryLog')")
        few = _statements(warehouse, tiny[1:3])
        assert _statements(warehouse, tiny[3:]) == few
        assert _bookkeeping(warehouse) == sorted((name.rsplit("/", 1)[1], 1) for name, _ in tiny)
    finally:
        warehouse.close()


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
    served = "served|206|10|1|0|||||"
    lines = [served, download_line(1), download_line(2, when=1_610_100_000), simple_line(3)]
    converted = convert(gz(lines))
    warehouse.load("file_downloads", [("d.json", converted.downloads)])
    warehouse.load("simple_requests", [("s.json", converted.simple)])
    assert warehouse.add_distributions([_distribution_row(tmp_path)]) == [SDIST_NAME]
    warehouse.close()
    url = f"file://{tmp_path}/export" if kind == "file" else request.getfixturevalue("s3_url")
    store = open_store(url)
    asyncio.run(store.put("file_downloads/date=1999-01-01/data_0.parquet", b"stale"))
    out = CliRunner().invoke(
        main, ["linehaul", "export", "--warehouse", f"duckdb://{path}", "--to", url]
    )
    assert out.exit_code == 0, out.output
    assert "linehaul export: 4 Parquet objects" in out.stderr
    keys = [item.key for item in asyncio.run(store.list())]
    uploaded = f"distribution_metadata/date={UPLOADED[:10]}/data_0.parquet"
    assert keys == [
        uploaded,
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
        "SELECT CAST(date AS VARCHAR), file.filename, response.status, response.bytes_sent FROM "
        f"read_parquet('{local}/file_downloads/*/*.parquet', hive_partitioning = true) ORDER BY 1"
    ).fetchall()
    assert found == [
        ("2021-01-07", "demo-1.0-py3-none-any.whl", 206, 10),
        ("2021-01-08", "demo-1.0-py3-none-any.whl", None, None),
    ]
    metadata = con.execute(
        f"SELECT filename, classifiers, requires_dist, size FROM read_parquet('{local}/{uploaded}')"
    ).fetchall()
    assert metadata == [(SDIST_NAME, ["Topic :: Demo"], ["requests>=2"], len(SDIST[1]))]


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


def test_small_local_files_load_through_one_spool(tmp_path: Path) -> None:
    """DuckDB opening each small file cost a load of a thousand tiny result files seconds:
    small files go through one spool, large ones (1 MiB and more) are read where they lie,
    and each file's own rows are recorded either way."""
    sizes = {f"s{n:03d}.json": 1 + n % 3 for n in range(150)}
    files = _local_files(tmp_path, {**sizes, "large.json": 4000})
    large = files[-1]
    assert large.path.stat().st_size >= 1 << 20  # 1 MiB: large
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    real = warehouse.con
    try:
        scanned = Scanned(real, tmp_path / "profile.json")
        warehouse.con = cast(duckdb.DuckDBPyConnection, scanned)
        result = warehouse.load_local("file_downloads", files)
        warehouse.con = real
        assert max(scanned.files.values()) == 2  # the spool and the large file
        assert result.rows == sum(sizes.values()) + 4000
        assert _bookkeeping(warehouse) == sorted({**sizes, "large.json": 4000}.items())
        assert real.execute("SELECT count(DISTINCT url) FROM file_downloads").fetchone() == (
            result.rows,
        )
    finally:
        warehouse.con = real
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


def test_distribution_rows_go_in_once(tmp_path: Path) -> None:
    """A row per filename, whatever is loaded again: a batch twice (a publish killed before
    it deleted the queue), a filename twice in a batch (a re-upload queued again)."""
    first = _distribution_row(tmp_path)
    later = _distribution_row(tmp_path, uploaded="2026-05-06T07:08:09Z")
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        assert warehouse.add_distributions([first, later]) == [SDIST_NAME]
        assert warehouse.add_distributions([later, first]) == []
        assert warehouse.distribution_files() == {SDIST_NAME}
        rows = warehouse.con.execute(
            "SELECT filename, upload_time, md5_digest FROM distribution_metadata"
        ).fetchall()
        assert [(name, str(when), md5) for name, when, md5 in rows] == [
            (SDIST_NAME, "2026-03-04 05:06:07.123456", "2" * 32)
        ]
        with pytest.raises(duckdb.ConstraintException):  # the key holds even by hand
            warehouse.con.execute(
                "INSERT INTO distribution_metadata SELECT * FROM distribution_metadata"
            )
    finally:
        warehouse.close()


def test_a_warehouse_from_before_gets_the_new_columns_and_tables(tmp_path: Path) -> None:
    """A warehouse an older release made (file_downloads without ``response``, no
    distribution_metadata): opened for loading, it gains both; its rows read null there."""
    path = tmp_path / "old.duckdb"
    converted = convert(gz([download_line(1)]))
    with duckdb.connect(str(path)) as con:
        old = [field for field in FILE_DOWNLOADS if field.name != "response"]
        columns = ", ".join(f'"{field.name}" {column_type(field)}' for field in old)
        con.execute(f"CREATE TABLE file_downloads ({columns})")
    warehouse = DuckDBWarehouse(path)
    try:
        warehouse.load("file_downloads", [("d.json", converted.downloads)])
        found = warehouse.con.execute(
            "SELECT file.filename, response FROM file_downloads"
        ).fetchall()
        assert found == [("demo-1.0-py3-none-any.whl", None)]
        assert warehouse.distribution_files() == set()
    finally:
        warehouse.close()
