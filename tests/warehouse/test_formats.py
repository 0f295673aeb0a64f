"""The stats outputs of a large breakdown: the table rich would print, in bounded memory."""

from __future__ import annotations

import tracemalloc
from datetime import date

from pythonhosted.warehouse.formats import render
from pythonhosted.warehouse.stats import Breakdown

ROWS = 20_000


def test_a_table_of_twenty_thousand_rows_is_written_without_a_layout_per_cell() -> None:
    """rich lays out every cell (~0.4 ms of CPU each) and holds the whole layout until it
    prints: ``stats --top 1000000`` over a million projects ran for minutes and held 1.9 GB.
    A table nothing in which wraps is now written directly, as rich would print it."""
    rows = [(f"project-{n}", 100_000 - n) for n in range(ROWS)]
    total = sum(count for _, count in rows)
    result = Breakdown(["project"], rows, total, date(2026, 1, 1), date(2026, 1, 30))
    tracemalloc.start()
    try:
        text = render(result, "table", "top projects, 2026-01-01 to 2026-01-30")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    lines = text.split("\n")
    assert lines[:5] == [
        "   top projects, 2026-01-01 to 2026-01-30   ",
        " " * 44,
        "  project         download_count   percent  ",
        " " + "\u2500" * 42 + " ",
        "  project-0               100000     0.01%  ",
    ]
    assert lines[-5:] == [
        "  project-19999            80001     0.00%  ",
        " " * 44,
        "  Total               1800010000   100.00%  ",
        " " * 44,
        "",
    ]
    assert len(lines) == ROWS + 8
    assert peak < 16 * len(text)  # the cells and the text, not a layout of every cell
