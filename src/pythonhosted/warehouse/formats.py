"""A :class:`~.stats.Breakdown` as a table (rich), JSON, CSV or markdown.

Every format has the same columns: the fields, ``download_count``, ``percent`` (of the
range's total). The table and markdown end with a Total row; JSON carries ``total``; CSV is
the rows only, for spreadsheets. Missing values read ``None`` (as pypinfo prints them) in
text formats and ``null`` in JSON. A :class:`~.coverage.Coverage` uses the same four formats
with its own columns; hours read ``2021-01-07T20:00Z``.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

import orjson
from rich import box
from rich.console import Console
from rich.table import Table

from pythonhosted.warehouse.coverage import Coverage
from pythonhosted.warehouse.stats import Breakdown

FORMATS = ("table", "json", "csv", "markdown")


def _percent(count: int, total: int) -> float:
    return round(100 * count / total, 2) if total else 0.0


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%MZ")
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
    total_row = ["Total", *([""] * (len(result.fields) - 1))] if result.fields else []
    total_row += [str(result.total), "100.00%" if result.total else ""]
    header = [*result.fields, "download_count", "percent"]
    numeric = {"download_count", "percent"}
    return sheet(fmt, title, header, numeric, _lines(result), total_row, document)


def render_coverage(result: Coverage, fmt: str, title: str) -> str:
    """Per hour (or day): downloads, simple requests, batches and status; the watermark in
    JSON, the sums in the Total row."""
    header = [result.by, "downloads", "simple_requests", "batches", "status"]
    lines = [[_text(moment), *map(str, counts), status] for moment, *counts, status in result.rows]
    rows = result.rows
    sums = [
        str(sum(r[1] for r in rows)),
        str(sum(r[2] for r in rows)),
        str(sum(r[3] for r in rows)),
    ]
    document = {
        "title": title,
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
        "by": result.by,
        "watermark": _text(result.watermark),
        "rows": [dict(zip(header, [_text(row[0]), *row[1:]], strict=True)) for row in result.rows],
    }
    numeric = {"downloads", "simple_requests", "batches"}
    return sheet(fmt, title, header, numeric, lines, ["Total", *sums, ""], document)


def sheet(
    fmt: str,
    title: str,
    header: list[str],
    numeric: set[str],
    lines: list[list[str]],
    total_row: list[str],
    document: dict[str, Any],
) -> str:
    """Text rows under ``header`` in format ``fmt``, shared by every stats output: ``numeric``
    columns align right, table and markdown end with ``total_row``, JSON is ``document``."""
    if fmt == "json":
        return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)
        return buffer.getvalue()
    if fmt == "markdown":
        align = ["---:" if name in numeric else "---" for name in header]
        cells = [header, align, *lines, total_row]
        body = "\n".join("| " + " | ".join(row) + " |" for row in cells)
        return f"{title}\n\n{body}\n"
    if fmt == "table":
        grid = Table(title=title, box=box.SIMPLE_HEAD)
        for name in header:
            grid.add_column(name, justify="right" if name in numeric else "left")
        for row in lines:
            grid.add_row(*row)
        grid.add_section()
        grid.add_row(*total_row)
        buffer = io.StringIO()
        Console(file=buffer, width=120, color_system=None, highlight=False).print(grid)
        return buffer.getvalue()
    raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value
