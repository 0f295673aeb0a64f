"""``pythonhosted stats``: download counts from the warehouse, pypinfo-style."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import click

from pythonhosted.config import Settings
from pythonhosted.warehouse.base import WarehouseError, warehouse_url
from pythonhosted.warehouse.duck import duckdb_path
from pythonhosted.warehouse.render import FORMATS, render
from pythonhosted.warehouse.stats import FIELDS, breakdown


class BadUsage(click.ClickException):
    """A wrong argument: one line and exit status 2, like click's own usage errors."""

    exit_code = 2


def _date(text: str | None, flag: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadUsage(f"{flag} must be a date, YYYY-MM-DD: {text!r}") from None


@click.command("stats")
@click.argument("project", required=False)
@click.option("--top", type=click.IntRange(min=1), help="The N most-downloaded projects instead.")
@click.option("--days", type=click.IntRange(min=1), help="The last N days, today included [30].")
@click.option("--start", help="First day, YYYY-MM-DD (UTC).")
@click.option("--end", help="Last day, YYYY-MM-DD (UTC) [today].")
@click.option("--all-time", is_flag=True, help="Every download the warehouse holds.")
@click.option("--by", "by", multiple=True, help=f"Break down by (repeatable): {', '.join(FIELDS)}.")
@click.option("--format", "fmt", default="table", help=f"Output: {', '.join(FORMATS)} [table].")
@click.option("--warehouse", help="duckdb:///PATH [linehaul.warehouse, duckdb://DATA/...].")
@click.pass_obj
def stats(
    settings: Settings,
    project: str | None,
    top: int | None,
    days: int | None,
    start: str | None,
    end: str | None,
    all_time: bool,
    by: tuple[str, ...],
    fmt: str,
    warehouse: str | None,
) -> None:
    """Downloads of PROJECT over a date range, broken down --by fields (or --top N projects).

    Percentages are of the range's total. Exit status 1 when there is no data to read.
    """
    if (project is None) == (top is None):
        raise BadUsage("give either PROJECT or --top N")
    fields = [name.strip() for value in by for name in value.split(",") if name.strip()]
    for name in fields:
        if name not in FIELDS:
            raise BadUsage(f"unknown field {name!r} for --by (choose from {', '.join(FIELDS)})")
    if fmt not in FORMATS:
        raise BadUsage(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if sum((days is not None, start is not None, all_time)) > 1:
        raise BadUsage("give only one of --days, --start/--end and --all-time")
    last = _date(end, "--end") or datetime.now(UTC).date()
    first = _date(start, "--start")
    if first is None and not all_time:
        first = last - timedelta(days=(days or 30) - 1)
    if first is not None and first > last:
        raise BadUsage(f"--start {first} is after --end {last}")
    url = warehouse or warehouse_url(settings)
    if not url.startswith("duckdb:"):
        raise click.ClickException(f"stats reads DuckDB warehouses only, not {url!r}")
    if top is not None:
        fields, title = ["project", *fields], "top projects"
    else:
        title = f"{project}"
    span = f"{first} to {last}" if first else f"all time to {last}"
    try:
        result = breakdown(duckdb_path(url), project, fields, first, last, limit=top)
    except WarehouseError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(render(result, fmt, f"{title}, {span}"), nl=False)
