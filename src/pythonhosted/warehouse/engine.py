"""The DuckDB engine's settings for this process: set once from the settings object by the
CLI (and each ``--workers`` process), applied by :mod:`.access` to every database it opens.

Process-wide on purpose: DuckDB's memory limit belongs to a database instance, which every
connection of this process to one file shares (see :mod:`.access`). Importing this module
does not import DuckDB, so every command can configure it at start-up for nothing.
"""

from __future__ import annotations

import sys

from pythonhosted.config import DuckDBSettings

_settings = DuckDBSettings()


def configure(settings: DuckDBSettings) -> None:
    global _settings
    _settings = settings


def statements() -> list[str]:
    """The ``SET`` statements that give a newly opened database this process's settings."""
    found = [f"SET memory_limit = '{_settings.memory_limit}'"]  # checked by its pattern
    if _settings.temp_directory is not None:
        quoted = str(_settings.temp_directory).replace("'", "''")
        found.append(f"SET temp_directory = '{quoted}'")
    return found


def memory_limit() -> str:
    return _settings.memory_limit


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is DuckDB's out-of-memory error (without importing DuckDB for a
    command that never loaded it)."""
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(error, duckdb.OutOfMemoryException)
