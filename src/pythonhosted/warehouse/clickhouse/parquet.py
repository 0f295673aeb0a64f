"""Parquet out of and into a ClickHouse warehouse, in the layout of DuckDB's export.

Export writes ``{table}/date=YYYY-MM-DD/data_0.parquet``, the date of the table's time column
(``timestamp``; ``distribution_metadata``'s ``upload_time``; rows without one, which the
parser never writes, under ``date=NULL``), the engine writing each day's file itself
(streamed to a local file, put a part at a time and removed before the next day, as
:mod:`pythonhosted.warehouse.parquet` does for DuckDB), and deletes objects under ``{table}/``
that it did not write. ClickHouse writes
RECORDs as Parquet structs, TIMESTAMP as microseconds in UTC.

Import loads such files (from either engine's export, or any Parquet with the schema's column
names) into the tables, each object once: its key is its name in the bookkeeping and its
insert carries a token, exactly as a result file (:mod:`.load`); the rollups' view takes the
rows as they go in. Each object is fetched to a local file a chunk at a time, and a file of
more rows than one insert should hold goes in as several, each deduplicated
(:mod:`.load`).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from pythonhosted.storage import Store
from pythonhosted.warehouse.base import LoadResult, LocalFile
from pythonhosted.warehouse.clickhouse.engines import Engine
from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse
from pythonhosted.warehouse.clickhouse.tables import quote
from pythonhosted.warehouse.parquet import Partition, put_export
from pythonhosted.warehouse.schema import TABLES, TIME_COLUMNS, UNIQUE_KEYS


class ClickHousePartitions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def partitions(self) -> list[Partition]:
        found = []
        for table in TABLES:
            time = quote(TIME_COLUMNS[table])
            rows = self.engine.rows(f"SELECT DISTINCT toDate({time}) FROM {quote(table)}")
            found += [Partition(table, row[0]) for row in rows]
        return found

    def write(self, partition: Partition, folder: Path) -> None:
        table, day = partition.table, partition.day
        columns = ", ".join(quote(field.name) for field in TABLES[table])
        time = quote(TIME_COLUMNS[table])
        folder.mkdir()
        where = f"toDate({time}) = {{day:Date32}}" if day else f"{time} IS NULL"
        final = " FINAL" if table in UNIQUE_KEYS else ""
        self.engine.export(
            f"SELECT {columns} FROM {quote(table)}{final} WHERE {where}",
            {"day": day} if day else {},
            "Parquet",
            folder / "data_0.parquet",
        )


async def export(
    engine: Engine,
    store: Store,
    on_total: Callable[[int], object] | None = None,
    on_partition: Callable[[], object] | None = None,
) -> int:
    """Export the warehouse into ``store``; returns the number of Parquet objects written."""
    return await put_export(ClickHousePartitions(engine), store, on_total, on_partition)


def table_of(key: str) -> str | None:
    """The table a Parquet object of the export layout belongs to."""
    table = key.split("/", 1)[0]
    return table if table in TABLES and key.endswith(".parquet") else None


async def import_parquet(
    warehouse: ClickHouseWarehouse,
    store: Store,
    on_total: Callable[[int], object] | None = None,
    on_file: Callable[[], object] | None = None,
) -> LoadResult:
    """Load every ``{table}/**.parquet`` object of ``store`` not loaded before."""
    keys = [item.key for item in await store.list() if table_of(item.key)]
    if on_total is not None:
        on_total(len(keys))
    total = LoadResult()
    with tempfile.TemporaryDirectory(prefix="parquet-import-") as tmp:
        for index, key in enumerate(keys):
            table = table_of(key)
            assert table is not None
            local = Path(tmp) / f"{index}.parquet"
            await store.get_file(key, local)
            result = await asyncio.to_thread(warehouse.load_parquet, table, LocalFile(key, local))
            local.unlink()
            total.rows += result.rows
            total.loaded += result.loaded
            total.skipped += result.skipped
            if on_file is not None:
                on_file()
    return total
