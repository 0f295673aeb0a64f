"""Export the DuckDB warehouse as Parquet, partitioned by date, into any object store.

Layout: ``{table}/date=YYYY-MM-DD/data_N.parquet`` (Hive-style, so DuckDB, Spark, BigQuery
external tables and pandas read the date back as a column), the date of the table's time
column (``timestamp``; ``distribution_metadata``'s ``upload_time``). DuckDB writes the files itself
(no pyarrow). Objects under ``{table}/`` that this export did not write (partitions from an
earlier export that no longer exist) are deleted afterwards, so the store ends as an exact
copy. Readers during an export may see old and new partitions.

**One day at a time, whatever the warehouse's size.** Each partition is written by its own
streaming ``COPY`` into files of about :data:`FILE_BYTES` (``data_0.parquet``,
``data_1.parquet``, …), each file put a part at a time and removed, before the next day is
read. So the export's memory is the engine's row-group buffers and two upload parts, and its
local disk one day's files. One partitioned ``COPY`` of the whole table, as before, held every
partition's rows at once: 2.5 GiB for 20M rows over three days (and failed under a 512 MB
``duckdb.memory_limit``), growing with the warehouse; an export read every file whole into
memory to upload it; a real day of PyPI's downloads is far larger than either. The bounded
file size also bounds what ClickHouse's import loads as one block. The warehouse is opened
for reading one day at a time, so a publish waits at most for one day's write, not the export.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

from pythonhosted.storage import Store
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.duck import quote
from pythonhosted.warehouse.schema import TABLES, TIME_COLUMNS

FILE_BYTES = 128 * 2**20
"""About how large one exported Parquet file grows before the next is started."""


@dataclass(frozen=True)
class Partition:
    """One table's rows of one UTC day (``None``: rows without a time, which the parser never
    writes)."""

    table: str
    day: date | None

    @property
    def folder(self) -> str:
        return f"{self.table}/date={self.day.isoformat() if self.day else 'NULL'}"


class PartitionWriter(Protocol):
    """An engine's side of an export."""

    def partitions(self) -> list[Partition]:
        """Every partition the warehouse holds rows of, in any order."""
        ...

    def write(self, partition: Partition, folder: Path) -> None:
        """Write the partition's rows as ``*.parquet`` files into the (new) local ``folder``."""
        ...


class DuckDBPartitions:
    def __init__(self, warehouse: Path) -> None:
        self.warehouse = warehouse

    def partitions(self) -> list[Partition]:
        found = []
        with reading(self.warehouse) as con:
            for table in TABLES:
                time = quote(TIME_COLUMNS[table])
                days = con.execute(f"SELECT DISTINCT CAST({time} AS DATE) FROM {quote(table)}")
                found += [Partition(table, row[0]) for row in days.fetchall()]
        return found

    def write(self, partition: Partition, folder: Path) -> None:
        time = quote(TIME_COLUMNS[partition.table])
        if partition.day is None:
            where = f"{time} IS NULL"
        else:  # a range on the column itself, so DuckDB skips row groups of other days
            start, end = partition.day, partition.day + timedelta(days=1)
            where = f"{time} >= DATE '{start.isoformat()}' AND {time} < DATE '{end.isoformat()}'"
        target = str(folder).replace("'", "''")
        with reading(self.warehouse) as con:
            con.execute(
                f"COPY (SELECT * FROM {quote(partition.table)} WHERE {where}) "
                f"TO '{target}' (FORMAT parquet, FILE_SIZE_BYTES {FILE_BYTES})"
            )


async def export(
    warehouse: Path,
    store: Store,
    on_total: Callable[[int], object] | None = None,
    on_partition: Callable[[], object] | None = None,
) -> int:
    """Export ``warehouse`` into ``store``; returns the number of Parquet objects written."""
    return await put_export(DuckDBPartitions(warehouse), store, on_total, on_partition)


async def put_export(
    writer: PartitionWriter,
    store: Store,
    on_total: Callable[[int], object] | None = None,
    on_partition: Callable[[], object] | None = None,
) -> int:
    """Write each of ``writer``'s partitions into a temporary directory, put its files into
    ``store`` and remove them, then delete the store's objects the export no longer has; the
    number of objects written. ``on_total`` gets the number of partitions, ``on_partition``
    is called after each. Shared by every engine's export."""
    found = await asyncio.to_thread(writer.partitions)
    partitions = sorted(found, key=lambda p: (p.table, p.day or date.min))
    if on_total is not None:
        on_total(len(partitions))
    written = set()
    with tempfile.TemporaryDirectory(prefix="parquet-export-") as tmp:
        for partition in partitions:
            folder = Path(tmp) / partition.folder
            folder.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(writer.write, partition, folder)
            for path in sorted(folder.glob("*.parquet")):
                key = f"{partition.folder}/{path.name}"
                await store.put_file(key, path)
                path.unlink()
                written.add(key)
            if on_partition is not None:
                on_partition()
    stale = [
        item.key
        for table in TABLES
        for item in await store.list(f"{table}/")
        if item.key not in written
    ]
    await store.delete_many(stale)
    return len(written)
