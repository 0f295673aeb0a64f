"""``pythonhosted linehaul``: the analytics pipeline's commands."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import click

from pythonhosted.linehaul.batch import Counts, open_log, parse_lines


@click.group()
def linehaul() -> None:
    """Turn CDN log lines into download analytics rows."""


@linehaul.command("parse")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--unprocessed",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write lines that cannot become rows here, verbatim, one per line.",
)
def parse_command(files: tuple[Path, ...], unprocessed: Path | None) -> None:
    """Print one JSON row per event in FILES (gzip'd or plain; stdin when none), in order.

    Events with an ignored user agent (bots, monitors) are dropped. A summary goes to stderr.
    """
    total = Counts()
    with ExitStack() as stack:
        inputs = [_open(stack, path) for path in files] or [sys.stdin.buffer]
        out = sys.stdout.buffer
        rejects: Callable[[bytes], object] | None = None
        if unprocessed is not None:
            rejects = _create(stack, unprocessed).write
        for stream in inputs:
            counts = parse_lines(open_log(stream), out.write, rejects)
            total.rows += counts.rows
            total.ignored += counts.ignored
            total.unprocessable += counts.unprocessable
        out.flush()
    click.echo(
        f"linehaul parse: {total.rows} rows, {total.ignored} ignored, "
        f"{total.unprocessable} unprocessable",
        err=True,
    )


def _open(stack: ExitStack, path: Path) -> BinaryIO:
    """Every input is opened before any output, so a bad path fails cleanly."""
    try:
        return stack.enter_context(path.open("rb"))
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from exc


def _create(stack: ExitStack, path: Path) -> BinaryIO:
    try:
        return stack.enter_context(path.open("wb"))
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from exc
