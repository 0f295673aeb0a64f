"""``pythonhosted stats``: download counts from the warehouse, pypinfo-style."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
import duckdb

from pythonhosted.cliparams import URL
from pythonhosted.config import Settings
from pythonhosted.errortext import first_line
from pythonhosted.pipeline import BATCH_TIMEOUTS, pipeline_urls, warehouse_url
from pythonhosted.storage import StorageError, open_store
from pythonhosted.warehouse.base import WarehouseError
from pythonhosted.warehouse.clickhouse import stats as clickhouse_stats
from pythonhosted.warehouse.clickhouse.engines import Engine, chdb_path, open_engine
from pythonhosted.warehouse.coverage import UNITS, coverage, oldest_in_flight
from pythonhosted.warehouse.duck import duckdb_path
from pythonhosted.warehouse.formats import FORMATS, render, render_coverage
from pythonhosted.warehouse.groups import Group, Role, group_projects
from pythonhosted.warehouse.stats import (
    FIELDS,
    FIRST_DAY,
    LAST_DAY,
    TIME_FIELDS,
    EmptyWarehouse,
    Filters,
    breakdown,
    out_of_range,
    reader,
)


class BadUsage(click.ClickException):
    """A wrong argument: one line and exit status 2, like click's own usage errors."""

    exit_code = 2


def _date(text: str | None, flag: str) -> date | None:
    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadUsage(f"{flag} must be a date, YYYY-MM-DD: {text!r}") from None
    if (problem := out_of_range(day)) is not None:
        raise BadUsage(f"{flag}: {problem}")
    return day


class _StatsCommand(click.Command):
    """``--by`` takes several fields (``--by installer python``): the field names that follow
    it are joined into its value before click parses, so anything else (PROJECT) stays
    positional."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        joined: list[str] = []
        rest = list(args)
        while rest:
            arg = rest.pop(0)
            if arg == "--by" and rest:
                arg = f"--by={rest.pop(0)}"
            if arg.startswith("--by="):
                while rest and rest[0] in FIELDS:
                    arg += f",{rest.pop(0)}"
            joined.append(arg)
        return super().parse_args(ctx, joined)


def _source(settings: Settings, flag: str | None) -> str:
    """Where the warehouse URL came from, for a message about a missing warehouse."""
    if flag is not None:
        return "from --warehouse"
    if settings.linehaul.warehouse:
        return "from linehaul.warehouse"
    return (
        f"the default under the data dir {str(settings.data_dir)!r}, relative to this directory; "
        "run from the directory 'pythonhosted serve' ran in, set PYTHONHOSTED_DATA_DIR, "
        "or give --warehouse duckdb:///PATH/warehouse.duckdb"
    )


TOP_MAX = 10**9


@click.command("stats", cls=_StatsCommand)
@click.argument("project", required=False)
@click.option(
    "--top",
    # Bounded: past 2**63 the query's LIMIT overflowed (an unforeseen error); no index comes
    # near a billion projects.
    type=click.IntRange(min=1, max=TOP_MAX),
    help="The N most-downloaded projects instead.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1, max=(LAST_DAY - FIRST_DAY).days + 1),
    help="The last N complete UTC days (not today) [30].",
)
@click.option("--start", help="First day, YYYY-MM-DD (UTC).")
@click.option("--end", help="Last day, YYYY-MM-DD (UTC) [yesterday; today is partial].")
@click.option("--all-time", is_flag=True, help="Every download the warehouse holds.")
@click.option(
    "--by", "by", multiple=True, help=f"Break down by one or more of: {', '.join(FIELDS)}."
)
@click.option(
    "--include-mirrors/--exclude-mirrors",
    default=False,
    help="Count downloads by mirroring tools (bandersnatch, devpi, ...) [exclude].",
)
@click.option("--include-ci/--exclude-ci", default=True, help="Count CI downloads [include].")
@click.option("--author", help="Total over every project whose metadata names this author.")
@click.option("--maintainer", help="Total over every project whose metadata names this maintainer.")
@click.option(
    "--org",
    help="Total over an org's projects: an e-mail domain (example.org) of their authors or "
    "maintainers, or a code host's owner (github.com/pallets) in their project URLs.",
)
@click.option(
    "--bytes",
    "with_bytes",
    is_flag=True,
    help="Add the bytes served (every response, ranges included) [per day without --by].",
)
@click.option("--format", "fmt", default="table", help=f"Output: {', '.join(FORMATS)} [table].")
@click.option(
    "--warehouse",
    type=URL,
    help="duckdb:///PATH, chdb:///PATH or clickhouse://HOST:PORT/DB "
    "[linehaul.warehouse, duckdb://DATA/...].",
)
@click.option("--coverage", "show_coverage", is_flag=True, help="Which hours are complete.")
@click.option("--logs", type=URL, help="With --coverage: log store URL [as linehaul ingest].")
@click.option(
    "--results", type=URL, help="With --coverage: results store URL [as linehaul publish]."
)
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
    include_mirrors: bool,
    include_ci: bool,
    author: str | None,
    maintainer: str | None,
    org: str | None,
    with_bytes: bool,
    fmt: str,
    warehouse: str | None,
    show_coverage: bool,
    logs: str | None,
    results: str | None,
) -> None:
    """Downloads of PROJECT over a date range, broken down --by fields (or --top N projects,
    or the total over an --author's, --maintainer's or --org's projects), or with --coverage
    which UTC hours (--by day: days) are complete, gaps, or pending.

    Days are UTC; without a range, the last 30 complete days. Mirrors are left out unless
    --include-mirrors. A download is a response that sent the file's first byte (a 200, or a
    206 from byte 0): the ranges installers read metadata with are not. Percentages are of
    the range's total. Exit status 1 when there is no data to read, or no download of
    PROJECT was ever recorded.
    """
    fields = [name.strip() for value in by for name in value.split(",") if name.strip()]
    asked: tuple[tuple[Role, str | None], ...] = (
        ("author", author),
        ("maintainer", maintainer),
        ("org", org),
    )
    roles = [(role, value) for role, value in asked if value is not None]
    if len(roles) > 1:
        raise BadUsage("give only one of --author, --maintainer and --org")
    group = Group(*roles[0]) if roles else None
    if show_coverage:
        if project is not None or top is not None or all_time or group or with_bytes:
            raise BadUsage("--coverage takes no PROJECT, --top, --all-time, group or --bytes")
        if len(fields) > 1 or not set(fields) <= set(UNITS):
            raise BadUsage(f"--coverage is --by {' or '.join(UNITS)}")
    else:
        if logs is not None or results is not None:
            raise BadUsage("--logs and --results go with --coverage")
        if group is not None and project is not None:
            raise BadUsage(f"--{group.role} totals several projects: give no PROJECT")
        if group is None and (project is None) == (top is None):
            raise BadUsage("give either PROJECT or --top N")
        if with_bytes and not any(name in TIME_FIELDS for name in fields):
            fields = ["day", *fields]
        for name in fields:
            if name not in FIELDS:
                raise BadUsage(f"unknown field {name!r} for --by (choose from {', '.join(FIELDS)})")
    if fmt not in FORMATS:
        raise BadUsage(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if sum((days is not None, start is not None, all_time)) > 1:
        raise BadUsage("give only one of --days, --start/--end and --all-time")
    today = datetime.now(UTC).date()
    last = _date(end, "--end") or (today if show_coverage else today - timedelta(days=1))
    first = _date(start, "--start")
    if first is None and not all_time:
        first = last - timedelta(days=(days or 30) - 1)
    if first is not None and first > last:
        raise BadUsage(f"--start {first} is after --end {last}")
    url = warehouse or warehouse_url(settings)
    if not url.startswith(("duckdb:", "chdb:", "clickhouse:")):
        raise click.ClickException(f"stats reads DuckDB and ClickHouse warehouses, not {url!r}")
    if show_coverage:
        assert first is not None  # --all-time was refused
        by_unit = fields[0] if fields else "hour"
        _coverage(settings, logs, results, url, first, last, by_unit, fmt)
        return
    filters = Filters(mirrors=include_mirrors, ci=include_ci)
    try:
        source = _stats_source(url)
        try:
            among = _members(source, group) if group is not None else None
            if top is not None:
                fields, title = ["project", *fields], "top projects"
            else:
                title = f"{project}"
            if group is not None:
                assert among is not None
                count = f"{len(among)} project{'s' if len(among) != 1 else ''}"
                title = f"{'top projects of ' if top else ''}{group.describe()} ({count})"
            question = (project, fields, first, last, top, filters)
            if isinstance(source, Path):
                result = breakdown(source, *question, among=among, with_bytes=with_bytes)
            else:
                result = clickhouse_stats.breakdown(
                    source, *question, among=among, with_bytes=with_bytes
                )
        finally:
            if not isinstance(source, Path):
                source.close()
    except EmptyWarehouse as exc:
        raise click.ClickException(f"{exc} ({_source(settings, warehouse)})") from exc
    except WarehouseError as exc:
        raise click.ClickException(str(exc)) from exc
    span = f"{first} to {last}" if first else f"all time to {last}"
    click.echo(render(result, fmt, f"{title}, {span}"), nl=False)


def _stats_source(url: str) -> Path | Engine:
    """A DuckDB warehouse's path, or a ClickHouse warehouse opened for reading."""
    return duckdb_path(url) if url.startswith("duckdb:") else _clickhouse_reader(url)


def _clickhouse_reader(url: str) -> Engine:
    """A ClickHouse warehouse opened for reading (a chDB directory must exist already)."""
    if url.startswith("chdb:") and not chdb_path(url).is_dir():
        raise EmptyWarehouse(f"no warehouse at {chdb_path(url)}")
    try:
        return open_engine(url)
    except ValueError as exc:
        raise BadUsage(str(exc)) from exc


def _members(source: Path | Engine, group: Group) -> list[str]:
    """The group's projects; one line and exit 1 when it has none."""
    if isinstance(source, Path):
        with reader(source) as con:
            members = group_projects(con, group)
    else:
        members = clickhouse_stats.group_projects(source, group)
    if not members:
        raise click.ClickException(
            f"no uploaded file's metadata names {group.describe()} (distribution_metadata)"
        )
    return members


def _coverage(
    settings: Settings,
    logs: str | None,
    results: str | None,
    url: str,
    first: date,
    last: date,
    by: str,
    fmt: str,
) -> None:
    """``stats --coverage``: list the stores for work in flight, then read the warehouse."""
    logs_url, results_url, _ = pipeline_urls(settings)
    try:
        logs_store = open_store(logs or logs_url, BATCH_TIMEOUTS)
        results_store = open_store(results or results_url, BATCH_TIMEOUTS)
        in_flight = asyncio.run(oldest_in_flight(logs_store, results_store))
        now = datetime.now(UTC).replace(tzinfo=None)
        if url.startswith("duckdb:"):
            result = coverage(duckdb_path(url), first, last, now=now, in_flight=in_flight, by=by)
        else:
            engine = _clickhouse_reader(url)
            try:
                result = coverage(engine, first, last, now=now, in_flight=in_flight, by=by)
            finally:
                engine.close()
    except (StorageError, WarehouseError, ValueError, duckdb.Error) as exc:  # not a warehouse
        raise click.ClickException(first_line(exc)) from exc
    title = f"coverage, {first} to {last}, complete through {result.watermark:%Y-%m-%dT%H:%MZ}"
    click.echo(render_coverage(result, fmt, title), nl=False)
