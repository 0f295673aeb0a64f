"""``pythonhosted linehaul``: the analytics pipeline's commands.

What only some commands use is imported by those commands: an ``ingest --once`` or
``publish --once`` worker, started every few minutes by a scheduler (and hundreds of times by
the tests), has no use for the warehouse engines (DuckDB, ClickHouse: a third of its start-up),
nor for the HTTP server and metrics of a long-running worker (granian, prometheus_client), nor
for the upload metadata readers (packaging) unless uploads are queued.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import click

from pythonhosted.cliparams import KEPT_URL, URL, some_path
from pythonhosted.config import Settings, load_settings
from pythonhosted.errortext import first_line
from pythonhosted.linehaul.batch import Counts, LogLines, parse_lines
from pythonhosted.linehaul.columns import converter_name
from pythonhosted.linehaul.ingest import ingest_once
from pythonhosted.linehaul.progress import progress_bar
from pythonhosted.logsetup import status
from pythonhosted.pipeline import BATCH_TIMEOUTS, pipeline_urls, uploads_url, warehouse_url
from pythonhosted.storage import StorageError, open_store
from pythonhosted.warehouse import LoadResult, WarehouseError, open_warehouse

if TYPE_CHECKING:
    from pythonhosted.linehaul.metadata import MetadataSummary
    from pythonhosted.linehaul.monitor import Job
    from pythonhosted.web.server import Bind

T = TypeVar("T")


@click.group()
@click.pass_context
def linehaul(ctx: click.Context) -> None:
    """Turn CDN log lines into download analytics rows."""
    if ctx.obj is None:  # run on its own, not under `pythonhosted`
        ctx.obj = load_settings()


@linehaul.command("parse")
@click.argument("files", nargs=-1, type=some_path(dir_okay=False))
@click.option(
    "--unprocessed",
    type=some_path(dir_okay=False),
    help="Write lines that cannot become rows here, verbatim, one per line.",
)
@click.pass_obj
def parse_command(settings: Settings, files: tuple[Path, ...], unprocessed: Path | None) -> None:
    """Print one JSON row per event in FILES (gzip'd or plain; stdin when none), in order.

    Events with an ignored user agent (bots, monitors) are dropped; blank lines are skipped
    and lines over linehaul.max_line_length are cut and counted. A summary goes to stderr.
    A damaged gzip stops the command (exit status 1) after the rows of the lines before
    the damage.
    """
    total = Counts()
    max_line = settings.linehaul.max_line_length
    with ExitStack() as stack:
        inputs = [(str(path), _open(stack, path)) for path in files] or [
            ("stdin", sys.stdin.buffer)
        ]
        out = sys.stdout.buffer
        rejects: Callable[[bytes], object] | None = None
        if unprocessed is not None:
            rejects = _create(stack, unprocessed).write
        for name, stream in inputs:
            lines = LogLines(stream, max_line)
            total.add(parse_lines(lines, out.write, rejects))
            total.too_long += lines.cutter.too_long
            total.blank += lines.empty
            if lines.damage is not None:
                out.flush()
                raise click.ClickException(
                    f"{name} is damaged at compressed byte {lines.damage.offset} "
                    f"({lines.damage.reason}): stopped after its first {lines.lines} lines"
                )
        out.flush()
    status(
        f"linehaul parse: {total.rows} rows, {total.ignored} ignored, "
        f"{total.unprocessable} unprocessable{total.extras()}"
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


def _with_urls(settings: Settings, **urls: str | None) -> Settings:
    """Settings with the command line's store URLs (and address) over the configured ones."""
    given = {name: url for name, url in urls.items() if url is not None}
    section = settings.linehaul.model_copy(update=given)
    return settings.model_copy(update={"linehaul": section})


def _run(job: Coroutine[Any, Any, T]) -> T:
    """Run a job; store and URL failures become one line and exit status 1."""
    try:
        return asyncio.run(job)
    except (StorageError, WarehouseError, ValueError, OSError) as exc:
        raise click.ClickException(first_line(exc)) from exc


def _address(bind: str) -> Bind:
    from pythonhosted.web.server import Bind

    try:
        return Bind.parse(bind)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _refuse_bind_with_once(once: bool, bind: str | None) -> None:
    if once and bind is not None:
        raise click.UsageError("--bind serves a running worker's metrics; --once does not run one")


def _keep_running(settings: Settings, job: Job, bind: str | None) -> None:
    """One job until SIGINT/SIGTERM: headless, or with /_health and /metrics on ``bind``."""
    from pythonhosted.linehaul.app import RUNNERS
    from pythonhosted.linehaul.monitor import Monitor
    from pythonhosted.linehaul.service import build_app
    from pythonhosted.web.server import EarlyStop, ServerLimits, run

    if bind is not None:
        run([(build_app(settings, (job,)), _address(bind))], ServerLimits.of(settings.http))
        return

    early = EarlyStop()

    async def headless() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if early.requested:
            stop.set()
        await RUNNERS[job](settings, stop, Monitor((job,)))

    _run(headless())


@linehaul.command("serve")
@click.option(
    "--logs", type=URL, help="Log store URL [linehaul.logs, files.logs, file://DATA/logs]."
)
@click.option(
    "--results", type=URL, help="Results store URL [linehaul.results, file://DATA/results]."
)
@click.option(
    "--warehouse",
    type=URL,
    help="Warehouse URL [linehaul.warehouse, duckdb://DATA/warehouse.duckdb].",
)
@click.option("--bind", help="HOST:PORT for /_health and /metrics [127.0.0.1:8004].")
@click.pass_obj
def serve_command(
    settings: Settings,
    logs: str | None,
    results: str | None,
    warehouse: str | None,
    bind: str | None,
) -> None:
    """Run ingest and publish until interrupted, with /_health and /metrics on --bind.

    A stop (Ctrl-C, SIGTERM) lets the log object or group of files under way finish first.
    """
    from pythonhosted.linehaul.service import build_app
    from pythonhosted.web.server import ServerLimits, run

    settings = _with_urls(settings, logs=logs, results=results, warehouse=warehouse, bind=bind)
    address = _address(settings.linehaul.bind)
    logs_url, results_url, warehouse_url = pipeline_urls(settings)
    banner = (
        f"linehaul on {address.url()} (logs {logs_url}; results {results_url}; "
        f"warehouse {warehouse_url})"
    )
    run(
        [(build_app(settings), address)],
        ServerLimits.of(settings.http),
        lambda: status(banner),
    )


_WORKER_BIND = "Without --once: also answer /_health and /metrics on HOST:PORT."


@linehaul.command("ingest")
@click.option(
    "--logs", type=URL, help="Log store URL [linehaul.logs, files.logs, file://DATA/logs]."
)
@click.option(
    "--results", type=KEPT_URL, help="Results store URL [linehaul.results, file://DATA/results]."
)
@click.option("--once", is_flag=True, help="One pass over the log store, then exit.")
@click.option("--bind", help=_WORKER_BIND)
@click.pass_obj
def ingest_command(
    settings: Settings, logs: str | None, results: str | None, once: bool, bind: str | None
) -> None:
    """Turn log objects into result files (NDJSON rows per table, unprocessable lines).

    Safe to run as several processes on the same stores. Without --once, polls every
    linehaul.ingest_interval seconds until interrupted.
    """
    settings = _with_urls(settings, logs=logs, results=results)
    _refuse_bind_with_once(once, bind)
    if not once:
        _keep_running(settings, "ingest", bind)
        return
    logs_url, results_url, _ = pipeline_urls(settings)

    async def one_pass() -> str:
        logs_store = open_store(logs_url, BATCH_TIMEOUTS)
        results_store = open_store(results_url, BATCH_TIMEOUTS)
        with progress_bar("ingest") as bar:
            summary = await ingest_once(
                logs_store,
                results_store,
                lease_timeout=settings.linehaul.lease_timeout,
                on_total=bar.total,
                on_object=bar.advance,
                max_line_length=settings.linehaul.max_line_length,
                concurrency=settings.linehaul.ingest_concurrency,
            )
        return summary.line()

    summary = _run(one_pass())
    status(f"linehaul ingest: {summary} ({converter_name()} converter)")


@linehaul.command("publish")
@click.option(
    "--results", type=URL, help="Results store URL [linehaul.results, file://DATA/results]."
)
@click.option(
    "--warehouse",
    type=URL,
    help="Warehouse URL: duckdb:///PATH, bigquery://PROJECT/DATASET, chdb:///PATH or "
    "clickhouse://HOST:PORT/DB [linehaul.warehouse, duckdb://DATA/warehouse.duckdb].",
)
@click.option("--once", is_flag=True, help="Load what is there now (every batch), then exit.")
@click.option("--bind", help=_WORKER_BIND)
@click.pass_obj
def publish_command(
    settings: Settings,
    results: str | None,
    warehouse: str | None,
    once: bool,
    bind: str | None,
) -> None:
    """Load result files into the warehouse, each exactly once, and delete them.

    Without --once, runs every linehaul.publish_interval seconds until interrupted.
    """
    settings = _with_urls(settings, results=results, warehouse=warehouse)
    _refuse_bind_with_once(once, bind)
    if not once:
        _keep_running(settings, "publish", bind)
        return
    from pythonhosted.linehaul.publish import PublishSummary, publish_with

    _, results_url, warehouse_url = pipeline_urls(settings)
    files = uploads_url(settings)
    batch = settings.linehaul.publish_batch_files

    async def drain() -> PublishSummary:
        store = open_store(results_url, BATCH_TIMEOUTS)
        uploads = open_store(files, BATCH_TIMEOUTS) if files else None
        total = PublishSummary()
        with progress_bar("publish") as bar:
            while True:
                summary = await publish_with(
                    store,
                    warehouse_url,
                    batch_files=batch,
                    on_total=bar.total,
                    on_files=bar.advance,
                    uploads=uploads,
                )
                total.add(summary)
                if summary.files + summary.skipped < batch:
                    break
        return total

    total = _run(drain())
    status(f"linehaul publish: {total.line()}")
    if total.failed:  # left in place for the next pass, each named in an error line above
        raise SystemExit(1)


@linehaul.command("metadata")
@click.option("--store", type=URL, help="The files store uploads went to [files.primary].")
@click.option(
    "--warehouse",
    type=URL,
    help="Warehouse URL: duckdb:///PATH, bigquery://PROJECT/DATASET, chdb:///PATH or "
    "clickhouse://HOST:PORT/DB [linehaul.warehouse, duckdb://DATA/warehouse.duckdb].",
)
@click.option(
    "--backfill",
    "backfill_all",
    is_flag=True,
    help="Every file the store holds that the warehouse lacks (stores uploaded to before "
    "there was a queue), not only the queued rows.",
)
@click.pass_obj
def metadata_command(
    settings: Settings, store: str | None, warehouse: str | None, backfill_all: bool
) -> None:
    """Add distribution_metadata rows to the warehouse: one per uploaded file, once.

    Publish adds the rows uploads queue by itself when files.primary is set; this does it
    now, or with --backfill reads every record (and its sidecar or file) of the store.
    """
    from pythonhosted.linehaul.metadata import backfill, load_queued

    url = store or uploads_url(settings)
    if not url:
        raise click.UsageError(
            "no files store: pass --store URL or set PYTHONHOSTED_FILES__PRIMARY"
        )
    target = warehouse or warehouse_url(settings)
    batch = settings.linehaul.publish_batch_files

    async def add() -> MetadataSummary:
        uploads = open_store(url, BATCH_TIMEOUTS)
        db = await asyncio.to_thread(open_warehouse, target)
        try:
            if backfill_all:
                done = await backfill(uploads, db)
                queue = await load_queued(uploads, db, batch=batch)  # the backfill had them
                done.present += queue.present + queue.added
                return done
            return await load_queued(uploads, db, batch=batch)
        finally:
            db.close()

    status(f"linehaul metadata: {_run(add()).line()}")


@linehaul.command("rollup")
@click.option(
    "--warehouse",
    type=URL,
    help="duckdb:///PATH, chdb:///PATH or clickhouse://HOST:PORT/DB [linehaul.warehouse].",
)
@click.option("--rebuild", is_flag=True, required=True, help="Recompute them from the rows.")
@click.pass_obj
def rollup_command(settings: Settings, warehouse: str | None, rebuild: bool) -> None:
    """Recompute the daily rollups from every download row, in one transaction.

    Publish keeps them up to date by itself; this is for a warehouse changed by hand.
    BigQuery's rollups are materialized views that BigQuery maintains; ClickHouse's are
    rebuilt here too (run it while nothing loads).
    """
    from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse
    from pythonhosted.warehouse.duck import DuckDBWarehouse

    url = warehouse or warehouse_url(settings)
    if url.startswith(("chdb:", "clickhouse:")):
        try:
            house = ClickHouseWarehouse.from_url(url)
            try:
                house.rebuild_rollups()
            finally:
                house.close()
        except (WarehouseError, ValueError) as exc:
            raise click.ClickException(first_line(exc)) from exc
        status(f"linehaul rollup: rebuilt the rollups of {url}")
        return
    path = _duckdb_file(url, f"rollup rebuilds DuckDB warehouses only, not {url!r}")
    try:
        db = DuckDBWarehouse(path)
        try:
            db.rebuild_rollups()
        finally:
            db.close()
    except WarehouseError as exc:
        raise click.ClickException(first_line(exc)) from exc
    status(f"linehaul rollup: rebuilt the rollups of {path}")


def _duckdb_file(url: str, not_duckdb: str) -> Path:
    """The existing DuckDB file ``url`` names; ``not_duckdb`` is the error for another URL."""
    from pythonhosted.warehouse.duck import duckdb_path

    if not url.startswith("duckdb:"):
        raise click.ClickException(not_duckdb)
    path = duckdb_path(url)
    if not path.is_file():
        raise click.ClickException(f"no warehouse at {path}")
    return path


@linehaul.command("export")
@click.option(
    "--warehouse",
    type=URL,
    help="duckdb:///PATH, chdb:///PATH or clickhouse://HOST:PORT/DB "
    "[linehaul.warehouse, duckdb://DATA/...].",
)
@click.option("--to", "to", required=True, type=KEPT_URL, help="Store URL for the Parquet files.")
@click.pass_obj
def export_command(settings: Settings, warehouse: str | None, to: str) -> None:
    """Copy the warehouse (DuckDB or ClickHouse) into a store as Parquet, partitioned by date.

    Writes TABLE/date=YYYY-MM-DD/data_N.parquet a day at a time and deletes what an earlier
    export left there.
    """
    from pythonhosted.warehouse.clickhouse import parquet as clickhouse_parquet
    from pythonhosted.warehouse.clickhouse.engines import chdb_path, open_engine
    from pythonhosted.warehouse.parquet import export

    url = warehouse or warehouse_url(settings)
    if url.startswith(("chdb:", "clickhouse:")):
        if url.startswith("chdb:") and not chdb_path(url).is_dir():
            raise click.ClickException(f"no warehouse at {chdb_path(url)}")

        async def copy_clickhouse() -> int:
            store = open_store(to, BATCH_TIMEOUTS)
            engine = await asyncio.to_thread(open_engine, url)
            try:
                with progress_bar("export") as bar:
                    return await clickhouse_parquet.export(
                        engine, store, on_total=bar.total, on_partition=bar.advance
                    )
            finally:
                engine.close()

        status(f"linehaul export: {_run(copy_clickhouse())} Parquet objects")
        return
    path = _duckdb_file(url, f"export reads DuckDB and ClickHouse warehouses, not {url!r}")

    async def copy() -> int:
        store = open_store(to, BATCH_TIMEOUTS)
        with progress_bar("export") as bar:
            return await export(path, store, on_total=bar.total, on_partition=bar.advance)

    status(f"linehaul export: {_run(copy())} Parquet objects")


@linehaul.command("import")
@click.option(
    "--warehouse",
    type=URL,
    help="chdb:///PATH or clickhouse://HOST:PORT/DB [linehaul.warehouse].",
)
@click.option(
    "--from", "source", required=True, type=URL, help="Store URL holding an export's Parquet."
)
@click.pass_obj
def import_command(settings: Settings, warehouse: str | None, source: str) -> None:
    """Load Parquet files of an export (TABLE/date=.../*.parquet) into a ClickHouse warehouse,
    each file once: moving a DuckDB warehouse to ClickHouse is export, then import."""
    from pythonhosted.warehouse.clickhouse import parquet as clickhouse_parquet
    from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse

    url = warehouse or warehouse_url(settings)
    if not url.startswith(("chdb:", "clickhouse:")):
        raise click.ClickException(f"import loads ClickHouse warehouses only, not {url!r}")

    async def load() -> LoadResult:
        store = open_store(source, BATCH_TIMEOUTS)
        house = await asyncio.to_thread(ClickHouseWarehouse.from_url, url)
        try:
            with progress_bar("import") as bar:
                return await clickhouse_parquet.import_parquet(
                    house, store, on_total=bar.total, on_file=bar.advance
                )
        finally:
            house.close()

    result = _run(load())
    status(
        f"linehaul import: {len(result.loaded)} files, {result.rows} rows, "
        f"{len(result.skipped)} already loaded"
    )
