"""Parquet out of and into a ClickHouse warehouse, in the layout of DuckDB's export.

Export writes ``{table}/date=YYYY-MM-DD/data_0.parquet``, the date of the table's time column
(``timestamp``; ``distribution_metadata``'s ``upload_time``; rows without one, which the
parser never writes, under ``date=NULL``), the engine writing each day's file itself
(streamed to a local file, then uploaded), and deletes objects under ``{table}/`` that it did
not write, as :mod:`pythonhosted.warehouse.parquet` does for DuckDB. ClickHouse writes
RECORDs as Parquet structs, TIMESTAMP as microseconds in UTC.

Import loads such files (from either engine's export, or any Parquet with the schema's column
names) into the tables, each object once: its key is its name in the bookkeeping and its
insert carries a token, exactly as a result file (:mod:`.load`); the rollups' view takes the
rows as they go in. A file is one insert and one block, so it must fit in memory (a day of
rows per file, as the export writes them).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

from pythonhosted.storage import Store
from pythonhosted.warehouse.base import LoadResult, LocalFile
from pythonhosted.warehouse.clickhouse.engines import Engine
from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse
from pythonhosted.warehouse.clickhouse.tables import quote
from pythonhosted.warehouse.parquet import put_export
from pythonhosted.warehouse.schema import TABLES, TIME_COLUMNS, UNIQUE_KEYS


def write_parquet(engine: Engine, out: Path) -> list[Path]:
    """Every table's days under ``out``; the files written, relative to it."""
    written = []
    for table in TABLES:
        columns = ", ".join(quote(field.name) for field in TABLES[table])
        time = quote(TIME_COLUMNS[table])
        days: list[date | None] = [
            row[0] for row in engine.rows(f"SELECT DISTINCT toDate({time}) FROM {quote(table)}")
        ]
        for day in days:
            folder = Path(table) / f"date={day.isoformat() if day else 'NULL'}"
            (out / folder).mkdir(parents=True, exist_ok=True)
            where = f"toDate({time}) = {{day:Date32}}" if day else f"{time} IS NULL"
            final = " FINAL" if table in UNIQUE_KEYS else ""
            engine.export(
                f"SELECT {columns} FROM {quote(table)}{final} WHERE {where}",
                {"day": day} if day else {},
                "Parquet",
                out / folder / "data_0.parquet",
            )
            written.append(folder / "data_0.parquet")
    return sorted(written)


async def export(
    engine: Engine,
    store: Store,
    on_total: Callable[[int], object] | None = None,
    on_file: Callable[[], object] | None = None,
) -> int:
    """Export the warehouse into ``store``; returns the number of Parquet objects written."""
    return await put_export(lambda root: write_parquet(engine, root), store, on_total, on_file)


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
            local.write_bytes(await store.get_bytes(key))
            result = await asyncio.to_thread(warehouse.load_parquet, table, [LocalFile(key, local)])
            local.unlink()
            total.rows += result.rows
            total.loaded += result.loaded
            total.skipped += result.skipped
            if on_file is not None:
                on_file()
    return total
