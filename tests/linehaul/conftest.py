"""The reference parser (PyPI's linehaul 1.0.3) as a row producer, for differential tests.

Its rows are what PyPI's cloud function writes: the event unstructured by cattrs, the
timestamp as ``YYYY-MM-DD HH:MM:SS +00:00`` and ``installer.subcommand`` joined with
``shlex.join``.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cattrs
import pytest
from linehaul.events import parser as reference

DATA = Path("/work/shared/data/linehaul")
# The reference logs a traceback for every agent one of its parsers chokes on.
logging.getLogger("linehaul").setLevel(logging.CRITICAL)
_CONVERTER = cattrs.Converter()

RowFn = Callable[[str], dict[str, Any] | None]


def reference_row(line: str) -> dict[str, Any] | None:
    """The reference's row for a line (raises for an unprocessable one)."""
    event = reference.parse(line)
    if event is None:
        return None
    row: dict[str, Any] = _CONVERTER.unstructure(event)
    row["timestamp"] = f"{event.timestamp.replace(tzinfo=None).isoformat(' ')} +00:00"
    row["details"] = reference_details(row["details"])
    return row


def reference_details(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """Unstructured reference details with the subcommand list shell-joined."""
    if details is not None and details["installer"] is not None:
        subcommand = details["installer"]["subcommand"]
        if subcommand is not None:
            details["installer"]["subcommand"] = shlex.join(subcommand)
    return details


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The reference calls a pyparsing API that now warns; that is not our concern."""
    for item in items:
        if Path(item.path).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.filterwarnings("ignore:.*parseAll"))


@pytest.fixture
def ref_row() -> RowFn:
    return reference_row


@pytest.fixture
def data_dir() -> Path:
    return DATA
