"""The analytics warehouse: where linehaul's rows end up and where stats are read from.

Back ends share one small interface (:class:`~.base.Warehouse`): load a table's NDJSON
result files exactly once, keyed by file name. ``open_warehouse(url)`` picks one:

- ``duckdb:///path/file.duckdb`` — embedded, the default (:mod:`.duck`);
- ``bigquery://project/dataset`` — load jobs like PyPI's (:mod:`.bigquery`).

Table definitions come from :mod:`pythonhosted.warehouse.schema`, the one definition of the
row shape; stats queries (:mod:`.stats`) and Parquet export (:mod:`.parquet`) read DuckDB.
"""

from pythonhosted.warehouse.base import (
    LoadResult,
    LocalFile,
    Warehouse,
    WarehouseError,
    open_warehouse,
)

__all__ = [
    "LoadResult",
    "LocalFile",
    "Warehouse",
    "WarehouseError",
    "open_warehouse",
]
