"""Download statistics from the DuckDB warehouse: pypinfo-style breakdowns and top projects.

Every breakdown is one ``GROUP BY`` over ``file_downloads`` for a date range (inclusive, UTC);
percentages are of the range's total. Field names follow pypinfo where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
from packaging.utils import canonicalize_name

from pythonhosted.warehouse.base import WarehouseError
from pythonhosted.warehouse.duck import connect

FIELDS: dict[str, str] = {
    "day": 'CAST("timestamp" AS DATE)',
    "week": "CAST(date_trunc('week', \"timestamp\") AS DATE)",
    "month": "strftime(\"timestamp\", '%Y-%m')",
    "project": "project",
    "version": "file.version",
    "file-type": "file.type",
    "installer": "details.installer.name",
    "installer-version": "details.installer.version",
    "subcommand": "details.installer.subcommand",
    "python": "NULLIF(regexp_extract(details.python, '^[0-9]+\\.[0-9]+'), '')",
    "implementation": "details.implementation.name",
    "system": "details.system.name",
    "distro": "details.distro.name",
    "cpu": "details.cpu",
    "country": "country_code",
    "ci": "details.ci",
}
TIME_FIELDS = ("day", "week", "month")


class EmptyWarehouse(WarehouseError):
    """No warehouse file, or no downloads in it yet."""


@dataclass
class Breakdown:
    """Counts per combination of ``fields`` (sorted), and the total of the range."""

    fields: list[str]
    rows: list[tuple[Any, ...]]  # field values..., download_count
    total: int
    start: date | None
    end: date


def _range_filter(start: date | None, end: date) -> tuple[str, list[Any]]:
    after_end = end + timedelta(days=1)
    if start is None:
        return '"timestamp" < ?', [after_end]
    return '"timestamp" >= ? AND "timestamp" < ?', [start, after_end]


def _order(fields: list[str]) -> str:
    """Time breakdowns read in time order; the rest by count, biggest first."""
    columns = [f"f{index}" for index in range(len(fields))]
    if fields and fields[0] in TIME_FIELDS:
        return ", ".join([*columns, "download_count DESC"])
    return ", ".join(["download_count DESC", *(f"{column} NULLS LAST" for column in columns)])


def reader(path: Path) -> duckdb.DuckDBPyConnection:
    """The warehouse opened read-only; EmptyWarehouse when the file is not there yet."""
    if not path.is_file():
        raise EmptyWarehouse(f"no warehouse at {path}: run 'pythonhosted linehaul publish' first")
    return connect(path, read_only=True)


def _query(path: Path, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    con = reader(path)
    try:
        if con.execute("SELECT 1 FROM file_downloads LIMIT 1").fetchone() is None:
            raise EmptyWarehouse(f"the warehouse at {path} holds no downloads yet")
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def breakdown(
    path: Path,
    project: str | None,
    fields: list[str],
    start: date | None,
    end: date,
    limit: int | None = None,
) -> Breakdown:
    """Downloads of ``project`` (every project when None) from ``start`` to ``end``
    inclusive (all time when ``start`` is None), counted per combination of ``fields``.

    The project matches as given or in its normalized form (PEP 503): one equality test
    that keeps DuckDB's filter pushdown, where normalizing every stored name would not.
    """
    unknown = [name for name in fields if name not in FIELDS]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (choose from {', '.join(FIELDS)})")
    where, params = _range_filter(start, end)
    if project is not None:
        where += " AND project IN (?, ?)"
        params += [project, canonicalize_name(project)]
    selected = [f"{FIELDS[name]} AS f{index}" for index, name in enumerate(fields)]
    group = "GROUP BY ALL" if fields else ""
    sql = (
        f"SELECT {', '.join([*selected, 'count(*) AS download_count'])} "
        f"FROM file_downloads WHERE {where} {group}"
    )
    if fields:
        sql = f"SELECT *, sum(download_count) OVER () FROM ({sql}) ORDER BY {_order(fields)}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        found = _query(path, sql, params)
        total = int(found[0][-1]) if found else 0
        rows = [row[:-1] for row in found]
    else:
        rows = _query(path, sql, params)
        total = int(rows[0][0])
        rows = rows if total else []
    return Breakdown(fields, rows, total, start, end)
