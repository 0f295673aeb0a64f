"""Every setting of the one settings object has its row in the docs, under its own name, with
its environment variable and the default the code has.

The rows live in the README's Configuration table (top-level, ``http``, ``files``, ``index``,
``duckdb``) and in each service's own doc (camo, conveyor, linehaul, stats web). A setting
added without a row, renamed on one side, or whose default changed on one side only is a
setting an operator cannot find or gets wrong; ``http.access_log`` had no row at all.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

from pythonhosted.config import Settings

REPO = Path(__file__).resolve().parents[1]
README = "README.md"
DOC_OF_SECTION = {
    "": README,
    "http": README,
    "files": README,
    "index": README,
    "duckdb": README,
    "camo": "docs/camo.md",
    "conveyor": "docs/conveyor.md",
    "linehaul": "docs/linehaul.md",
    "stats_web": "docs/stats-web.md",
}
# Words some tables use for a boolean's default instead of `true`/`false`.
WORDS = {"on": "true", "off": "false"}


@functools.cache
def _tables(doc: str) -> list[list[dict[str, str]]]:
    """The doc's Markdown tables, each a list of rows keyed by the header's cells."""
    tables: list[list[dict[str, str]]] = []
    header: list[str] | None = None
    for line in (REPO / doc).read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if header is None:
            header = [cell.split(" ", 1)[0].lower() for cell in cells]
            tables.append([])
        elif not set(line) <= set("|-: "):
            tables[-1].append(dict(zip(header, cells, strict=False)))
    return tables


def _settings() -> list[tuple[str, str, FieldInfo]]:
    """(section, name, field) of every setting; section "" for the top level."""
    found = []
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            found += [(name, sub, info) for sub, info in model.model_fields.items()]
        else:
            found.append(("", name, field))
    return found


def _row(section: str, name: str) -> tuple[dict[str, str], int]:
    """The row documenting a setting, and its place among the names the row documents."""
    dotted = f"{section}.{name}" if section and DOC_OF_SECTION[section] == README else name
    for table in _tables(DOC_OF_SECTION[section]):
        for row in table:
            names = re.findall(r"`([\w.]+)`", row.get("setting", ""))
            if dotted in names:
                return row, names.index(dotted)
    raise AssertionError(f"{section}.{name}: no row in {DOC_OF_SECTION[section]}")


SETTINGS = _settings()


@pytest.mark.parametrize(
    ("section", "name", "field"), SETTINGS, ids=[f"{s}.{n}".strip(".") for s, n, _ in SETTINGS]
)
def test_every_setting_has_its_row_with_its_variable_and_default(
    section: str, name: str, field: FieldInfo
) -> None:
    row, place = _row(section, name)

    if DOC_OF_SECTION[section] == README:
        variable = "PYTHONHOSTED_" + (f"{section}__{name}" if section else name).upper()
        written = re.findall(r"`([A-Z_…]+)`", row["environment"])
        assert any(
            variable == each or (each.startswith("…") and variable.endswith(each[1:]))
            for each in written
        ), f"{variable} not in {row['environment']!r}"

    default = field.get_default(call_default_factory=True)
    if default in (None, "", [], {}):
        return  # derived from other settings (the data dir, another service's), said in words
    values = re.findall(r"`([^`]*)`", row["default"]) or [WORDS[row["default"].split(" ", 1)[0]]]
    value = values[place] if len(values) > place else values[0]
    kind: Any = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    documented = TypeAdapter(kind).validate_python(value)  # as the setting itself parses it
    assert documented == default, f"{section}.{name}: documented {value!r}, code {default!r}"
