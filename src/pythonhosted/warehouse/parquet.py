"""Export the DuckDB warehouse as Parquet, partitioned by date, into any object store.

Layout: ``{table}/date=YYYY-MM-DD/data_0.parquet`` (Hive-style, so DuckDB, Spark, BigQuery
external tables and pandas read the date back as a column), the date of the table's time
column (``timestamp``; ``distribution_metadata``'s ``upload_time``). DuckDB writes the files itself
(no pyarrow); they are uploaded whole, and objects under ``{table}/`` that this export did
not write (partitions from an earlier export that no longer exist) are deleted afterwards,
so the store ends as an exact copy. Readers during an export may see old and new partitions.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from pythonhosted.storage import Store
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.duck import quote
from pythonhosted.warehouse.schema import TABLES, TIME_COLUMNS


def write_parquet(warehouse: Path, out: Path) -> list[Path]:
    """Write every table's partitions under ``out``; the files written, relative to it."""
    with reading(warehouse) as con:
        for table in TABLES:
            target = str(out / table).replace("'", "''")
            time = quote(TIME_COLUMNS[table])
            con.execute(
                f"COPY (SELECT *, CAST({time} AS DATE) AS date FROM {quote(table)}) "
                f"TO '{target}' (FORMAT parquet, PARTITION_BY (date), OVERWRITE_OR_IGNORE)"
            )
    return sorted(path.relative_to(out) for path in out.rglob("*.parquet"))


async def export(
    warehouse: Path,
    store: Store,
    on_total: Callable[[int], object] | None = None,
    on_file: Callable[[], object] | None = None,
) -> int:
    """Export ``warehouse`` into ``store``; returns the number of Parquet objects written."""
    return await put_export(lambda root: write_parquet(warehouse, root), store, on_total, on_file)


async def put_export(
    write: Callable[[Path], list[Path]],
    store: Store,
    on_total: Callable[[int], object] | None = None,
    on_file: Callable[[], object] | None = None,
) -> int:
    """Write an export with ``write`` (into a temporary directory, returning the files it
    wrote, relative to it), put each file into ``store`` and delete the store's objects the
    export no longer has; the number of objects written. Shared by every engine's export."""
    with tempfile.TemporaryDirectory(prefix="parquet-export-") as tmp:
        root = Path(tmp)
        files = await asyncio.to_thread(write, root)
        if on_total is not None:
            on_total(len(files))
        written = set()
        for relative in files:
            key = relative.as_posix()
            await store.put(key, (root / relative).read_bytes())
            written.add(key)
            if on_file is not None:
                on_file()
    for table in TABLES:
        for item in await store.list(f"{table}/"):
            if item.key not in written:
                await store.delete(item.key)
    return len(written)
