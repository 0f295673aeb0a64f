"""``pythonhosted stats-web serve``: the dashboard, JSON API and badges on their own."""

from __future__ import annotations

import click

from pythonhosted.cliparams import URL
from pythonhosted.config import MAX_PENDING, MAX_WORKERS, Settings, export_to_environment
from pythonhosted.logsetup import status
from pythonhosted.pipeline import warehouse_url
from pythonhosted.stats_web.limits import shared_client_table
from pythonhosted.stats_web.service import build_app
from pythonhosted.web.server import Bind, ServerLimits, run, run_workers


@click.group("stats-web")
def stats_web() -> None:
    """Download stats on the web: pages, a pypistats-compatible JSON API, badges."""


@stats_web.command("serve")
@click.option(
    "--warehouse",
    type=URL,
    help="duckdb:///PATH, chdb:///PATH or clickhouse://HOST:PORT/DB "
    "[stats_web.warehouse, linehaul.warehouse].",
)
@click.option("--bind", help="HOST:PORT to listen on [127.0.0.1:8005].")
@click.option(
    "--workers", type=click.IntRange(min=1, max=MAX_WORKERS), help="Worker processes [1]."
)
@click.option(
    "--max-pending",
    type=click.IntRange(min=1, max=MAX_PENDING),
    help="Cold answers computed at once per worker; past it, 503 [16].",
)
@click.pass_obj
def serve_command(
    settings: Settings,
    warehouse: str | None,
    bind: str | None,
    workers: int | None,
    max_pending: int | None,
) -> None:
    """Serve the stats web until SIGINT/SIGTERM."""
    flags = {"warehouse": warehouse, "bind": bind, "workers": workers, "max_pending": max_pending}
    given = {name: value for name, value in flags.items() if value is not None}
    settings = settings.model_copy(
        update={"stats_web": settings.stats_web.model_copy(update=given)}
    )
    url = settings.stats_web.warehouse or warehouse_url(settings)
    if not url.startswith(("duckdb:", "chdb:", "clickhouse:")):
        raise click.UsageError(f"the stats web reads DuckDB and ClickHouse warehouses, not {url!r}")
    try:
        address = Bind.parse(settings.stats_web.bind)
        app = build_app(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    count = settings.stats_web.workers
    banner = f"stats web on {address.url()}/ ({count} worker(s); warehouse {url})"
    limits = ServerLimits.of(settings.http)
    if count == 1:
        run([(app, address)], limits, lambda: status(banner))
        return
    export_to_environment(settings, "stats_web", given)
    worker_app = "pythonhosted.stats_web.service:worker_app"
    with shared_client_table():  # one request budget per client for the whole instance
        run_workers(worker_app, address, count, limits, lambda: status(banner))
