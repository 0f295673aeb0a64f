"""A :class:`~.stats.Breakdown` as a table (rich's layout), JSON, CSV or markdown.

Every format has the same columns: the fields, ``download_count``, ``percent`` (of the
range's total), and with bytes ``bytes_sent`` (JSON: ``total_bytes`` too). The table and
markdown end with a Total row; JSON carries ``total``; CSV is the rows only, for
spreadsheets. Missing values read ``None`` (as pypinfo prints them) in text formats and
``null`` in JSON. A :class:`~.coverage.Coverage` uses the same four formats
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
#: the table's width, as rich lays it out (a wider one wraps)
WIDTH = 120


def _percent(count: int, total: int) -> float:
    return round(100 * count / total, 2) if total else 0.0


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%MZ")
    return value.isoformat() if isinstance(value, date) else str(value)


def _split(result: Breakdown, row: tuple[Any, ...]) -> tuple[list[Any], int, list[int]]:
    """A row's field values, its count, and its bytes (a list of one, or none)."""
    width = len(result.fields)
    return list(row[:width]), row[width], list(row[width + 1 :])


def _lines(result: Breakdown) -> list[list[str]]:
    """Text cells per row: field values, count, percent[, bytes]."""
    out = []
    for row in result.rows:
        values, count, sent = _split(result, row)
        percent = f"{_percent(count, result.total):.2f}%"
        out.append([*map(_text, values), str(count), percent, *map(str, sent)])
    return out


def render(result: Breakdown, fmt: str, title: str) -> str:
    """The breakdown in format ``fmt`` (one of :data:`FORMATS`), ending with a newline."""
    rows = []  # JSON's only: a dict a row, not made for the text formats
    for row in result.rows if fmt == "json" else ():
        values, count, sent = _split(result, row)
        rows.append(
            {
                **{name: _json(value) for name, value in zip(result.fields, values, strict=True)},
                "download_count": count,
                "percent": _percent(count, result.total),
                **({"bytes_sent": sent[0]} if sent else {}),
            }
        )
    document: dict[str, Any] = {
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
    numeric = {"download_count", "percent", "bytes_sent"}
    if result.total_bytes is not None:
        document["total_bytes"] = result.total_bytes
        total_row.append(str(result.total_bytes))
        header.append("bytes_sent")
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
        plain = _plain_table(title, header, numeric, lines, total_row)
        if plain is not None:
            return plain
        grid = Table(title=title, box=box.SIMPLE_HEAD)
        for name in header:
            grid.add_column(name, justify="right" if name in numeric else "left")
        for row in lines:
            grid.add_row(*row)
        grid.add_section()
        grid.add_row(*total_row)
        buffer = io.StringIO()
        Console(file=buffer, width=WIDTH, color_system=None, highlight=False).print(grid)
        return buffer.getvalue()
    raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


def _plain_table(
    title: str, header: list[str], numeric: set[str], lines: list[list[str]], total_row: list[str]
) -> str | None:
    """rich's ``SIMPLE_HEAD`` table, character for character, when rich would neither wrap
    nor measure anything (it fits in :data:`WIDTH` columns and so does the title, which has
    every cell is printable ASCII without edge spaces: one character, one column); else None.

    Hand-written because rich lays out each cell at ~0.4 ms of CPU: ``stats --top 1000000``
    ran for minutes and held 1.9 GB to print a table this writes in a few seconds.
    """
    widths = [len(name) for name in header]
    for row in (*lines, total_row):
        if not all(map(_plain, row)):
            return None
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    width = 2 + sum(widths) + 3 * len(widths) - 1
    if width > WIDTH or len(title) > width or not _plain(title):
        return None
    right = [name in numeric for name in header]

    def line(cells: list[str]) -> str:
        laid = (
            cell.rjust(size) if flush else cell.ljust(size)
            for cell, size, flush in zip(cells, widths, right, strict=True)
        )
        return "  " + "   ".join(laid) + "  \n"

    space = width - len(title)
    blank = " " * width + "\n"
    head = [" " * (space // 2) + title + " " * (space - space // 2) + "\n", blank, line(header)]
    rule = " " + "\u2500" * (width - 2) + " \n"
    section = [blank] if lines else []
    return "".join([*head, rule, *map(line, lines), *section, line(total_row), blank])


def _plain(text: str) -> bool:
    """Laid out by rich as it is: printable ASCII, no space at either end (rich trims)."""
    return text.isascii() and text.isprintable() and text.strip(" ") == text


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value
