"""A :class:`~.stats.Breakdown` as a table (rich), JSON, CSV or markdown.

Every format has the same columns: the fields, ``download_count``, ``percent`` (of the
range's total). The table and markdown end with a Total row; JSON carries ``total``; CSV is
the rows only, for spreadsheets. Missing values read ``None`` (as pypinfo prints them) in
text formats and ``null`` in JSON.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import orjson
from rich import box
from rich.console import Console
from rich.table import Table

from pythonhosted.warehouse.stats import Breakdown

FORMATS = ("table", "json", "csv", "markdown")


def _percent(count: int, total: int) -> float:
    return round(100 * count / total, 2) if total else 0.0


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _lines(result: Breakdown) -> list[list[str]]:
    """Text cells per row: field values, count, percent."""
    out = []
    for *values, count in result.rows:
        percent = f"{_percent(count, result.total):.2f}%"
        out.append([*map(_text, values), str(count), percent])
    return out


def render(result: Breakdown, fmt: str, title: str) -> str:
    """The breakdown in format ``fmt`` (one of :data:`FORMATS`), ending with a newline."""
    header = [*result.fields, "download_count", "percent"]
    if fmt == "json":
        rows = [
            {
                **{name: _json(value) for name, value in zip(result.fields, values, strict=True)},
                "download_count": count,
                "percent": _percent(count, result.total),
            }
            for *values, count in result.rows
        ]
        document = {
            "title": title,
            "start": result.start.isoformat() if result.start else None,
            "end": result.end.isoformat(),
            "by": result.fields,
            "total": result.total,
            "rows": rows,
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(_lines(result))
        return buffer.getvalue()
    total_row = ["Total", *([""] * (len(result.fields) - 1))] if result.fields else []
    total_row += [str(result.total), "100.00%" if result.total else ""]
    if fmt == "markdown":
        align = ["---"] * len(result.fields) + ["---:", "---:"]
        cells = [header, align, *_lines(result), total_row]
        body = "\n".join("| " + " | ".join(row) + " |" for row in cells)
        return f"{title}\n\n{body}\n"
    if fmt == "table":
        grid = Table(title=title, box=box.SIMPLE_HEAD)
        for name in result.fields:
            grid.add_column(name)
        grid.add_column("download_count", justify="right")
        grid.add_column("percent", justify="right")
        for row in _lines(result):
            grid.add_row(*row)
        grid.add_section()
        grid.add_row(*total_row)
        buffer = io.StringIO()
        Console(file=buffer, width=120, color_system=None, highlight=False).print(grid)
        return buffer.getvalue()
    raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value
