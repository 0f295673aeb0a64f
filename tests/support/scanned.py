"""Rows DuckDB read from tables, per statement, from its own profiler: a test asserts that a
question reads the rows it is about, not the whole history (no timings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import orjson


class Scanned:
    """Wraps a DuckDB connection for code that calls ``execute`` and fetches its result, and
    records each statement's ``total_rows_scanned`` (its SQL -> rows; a statement run twice
    keeps its last count) and the files its ``read_json`` and the like opened. The profile of
    a statement is written once its result is read, so it is taken both after ``execute``
    and after each fetch."""

    def __init__(self, con: duckdb.DuckDBPyConnection, profile: Path) -> None:
        self.con = con
        self.profile = profile
        self.rows: dict[str, int] = {}
        self.files: dict[str, int] = {}  # SQL -> files its table functions read
        con.execute("PRAGMA enable_profiling = 'json'")
        con.execute("SET profiling_coverage = 'ALL'")
        con.execute(f"SET profiling_output = '{profile}'")

    def take(self) -> None:
        """Record the profile of the statement run last."""
        profile = orjson.loads(self.profile.read_bytes())
        sql = profile["query"]["sql"]
        self.rows[sql] = int(profile["query"]["total_rows_scanned"])
        self.files[sql] = sum(_files_read(node) for node in profile["operator"])

    def execute(self, sql: str, params: Any = None) -> Scanned:
        self.con.execute(sql, params)
        self.take()
        return self

    def executemany(self, sql: str, params: Any) -> Scanned:
        self.con.executemany(sql, params)
        return self

    def fetchall(self) -> list[Any]:
        found = self.con.fetchall()
        self.take()
        return found

    def fetchone(self) -> Any:
        found = self.con.fetchone()
        self.take()
        return found

    def scanned(self, table: str) -> int:
        """The most rows one recorded statement naming ``table`` read."""
        return max((rows for sql, rows in self.rows.items() if table in sql), default=0)


def _files_read(node: dict[str, Any]) -> int:
    """Files the table functions in a profile's operator tree read."""
    own = int(node.get("extra_info", {}).get("Total Files Read", 0))
    return own + sum(_files_read(child) for child in node.get("children", []))
