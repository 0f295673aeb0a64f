"""Parquet export at a size where a day's file is larger than what the export may hold: the
export writes a day at a time, puts each file a part at a time, and splits a large day into
several files, every row exported once."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import duckdb
import pytest

from pythonhosted.storage import open_store, stores
from pythonhosted.warehouse import parquet
from pythonhosted.warehouse.duck import DuckDBWarehouse

ROWS = 300_000
DAYS = ("2026-11-01", "2026-11-02")
ROWS_OF_DAYS = """
INSERT INTO file_downloads BY NAME
SELECT TIMESTAMP '2026-11-01' + to_seconds(i * 2 * 86400 // {rows}) AS "timestamp",
    '/packages/' || md5(i::VARCHAR) AS url, 'p' || (hash(i) % 5000) AS project,
    {{'filename': md5(i::VARCHAR) || '.whl', 'project': 'p', 'version': (hash(i * 3) % 40)::VARCHAR,
      'type': 'bdist_wheel'}} AS file
FROM range({rows}) t(i)
"""


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300,000 rows of random-looking names over two days (a day's Parquet: ~8 MB)."""
    path = tmp_path_factory.mktemp("parquet") / "w.duckdb"
    DuckDBWarehouse(path).close()
    with duckdb.connect(str(path)) as con:
        con.execute(ROWS_OF_DAYS.format(rows=ROWS))
    return path


def _rows_read_back(folder: Path) -> list[tuple[object, ...]]:
    with duckdb.connect() as con:
        return con.execute(
            "SELECT CAST(date AS VARCHAR), count(*), count(DISTINCT url) FROM read_parquet("
            f"'{folder}/file_downloads/*/*.parquet', hive_partitioning = true) "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()


def test_a_days_file_is_put_a_part_at_a_time(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python holds about a part of a file at once, never the file (an export that read each
    file whole held a day of downloads)."""
    monkeypatch.setattr(stores, "PART_BYTES", 256 * 1024)
    store = open_store(f"file://{tmp_path}/out")
    tracemalloc.start()
    try:
        written = asyncio.run(parquet.export(warehouse, store))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    days = sorted((tmp_path / "out/file_downloads").iterdir())
    assert [day.name for day in days] == [f"date={day}" for day in DAYS]
    largest = max(file.stat().st_size for file in (tmp_path / "out").rglob("*.parquet"))
    assert written == 2
    assert largest > 4 * 2**20
    assert peak < largest / 2, (peak, largest)
    assert _rows_read_back(tmp_path / "out") == [(day, ROWS // 2, ROWS // 2) for day in DAYS]


def test_a_large_day_is_split_into_files_and_every_row_goes_once(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquet, "FILE_BYTES", 2**20)
    store = open_store(f"file://{tmp_path}/out")
    asyncio.run(store.put("file_downloads/date=2026-11-02/data_9.parquet", b"from before"))
    written = asyncio.run(parquet.export(warehouse, store))
    keys = [item.key for item in asyncio.run(store.list("file_downloads/"))]
    assert written == len(keys) > 2
    for day in DAYS:  # each day in several files, named as DuckDB numbers them
        names = sorted(key.rsplit("/", 1)[1] for key in keys if f"date={day}/" in key)
        assert len(names) > 1
        assert names == sorted(f"data_{n}.parquet" for n in range(len(names)))
    assert _rows_read_back(tmp_path / "out") == [(day, ROWS // 2, ROWS // 2) for day in DAYS]
