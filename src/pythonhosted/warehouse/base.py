"""The interface every warehouse back end implements, and the URL dispatcher."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class WarehouseError(Exception):
    """The warehouse cannot be opened or used (locked, unreachable, not a warehouse)."""


@dataclass
class LoadResult:
    """One load call: files newly loaded (with their rows) and files loaded before."""

    rows: int = 0
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LocalFile:
    """A result file on this machine's disk, to be loaded where it lies."""

    name: str
    path: Path
    rows: int | None = None  # as its writer counted them; a hint, checked against the load


class Warehouse(Protocol):
    """A place to load result files into, each file name at most once, ever.

    Methods block (DuckDB, HTTP); async callers run them in a worker thread.
    """

    def load(self, table: str, files: Sequence[tuple[str, bytes]]) -> LoadResult:
        """Load NDJSON ``files`` (name, contents) into ``table``; names loaded before are
        skipped. All-or-nothing per call where the back end allows."""
        ...

    def load_local(self, table: str, files: Sequence[LocalFile]) -> LoadResult:
        """:meth:`load` for files in a local results store, which a back end may read in
        place instead of taking their contents."""
        ...

    def close(self) -> None: ...


def open_warehouse(url: str) -> Warehouse:
    """A warehouse from its URL; ValueError (one line) for anything else."""
    if url.startswith("duckdb:"):
        from pythonhosted.warehouse.duck import DuckDBWarehouse, duckdb_path

        return DuckDBWarehouse(duckdb_path(url))
    if url.startswith("bigquery:"):
        from pythonhosted.warehouse.bigquery import BigQueryWarehouse

        return BigQueryWarehouse.from_url(url)
    raise ValueError(f"unsupported warehouse URL {url!r} (use duckdb:///path or bigquery://…)")
