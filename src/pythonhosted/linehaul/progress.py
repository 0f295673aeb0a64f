"""Progress bars for long CLI jobs (backfills, large loads): rich, on stderr, TTY only.

Piped or captured output (cron, CI, tests) gets no bar and no control codes, and does not
import rich at all (a fifth of a linehaul worker's start-up, paid on every scheduled run).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class Bar:
    """A task on a progress display, or nothing when stderr is not a terminal."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task

    def total(self, count: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=count)

    def advance(self, count: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, count)


@contextmanager
def progress_bar(description: str) -> Iterator[Bar]:
    """A bar for one job; the bar disappears when the job ends."""
    if not sys.stderr.isatty():
        yield Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as display:
        yield Bar(display, display.add_task(description, total=None))
