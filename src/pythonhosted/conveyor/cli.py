"""``pythonhosted conveyor serve`` and ``pythonhosted docs upload|redirect``."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import click

from pythonhosted.cliparams import KEPT_URL, URL, some_path
from pythonhosted.config import MAX_WORKERS, Settings, export_to_environment
from pythonhosted.conveyor.bundle import UploadLimits
from pythonhosted.conveyor.redirects import Redirect
from pythonhosted.conveyor.service import build_app, docs_url
from pythonhosted.conveyor.upload import PublishError, retention_of, set_redirect, upload_docs
from pythonhosted.errortext import first_line
from pythonhosted.logsetup import status
from pythonhosted.storage import COMMAND_TIMEOUTS, StorageError, Store, open_store
from pythonhosted.web.server import Bind, ServerLimits, run, run_workers


@click.group()
def conveyor() -> None:
    """Legacy package URLs and docs hosting (pythonhosted.org)."""


@conveyor.command("serve")
@click.option("--docs", type=URL, help="Docs store URL [file://DATA_DIR/docs].")
@click.option("--json-api", help="Package JSON API base URL, e.g. https://pypi.org.")
@click.option("--index", type=URL, help="Store holding the files catalog (when no --json-api).")
@click.option("--files-base-url", help="Prefix for own-index redirect targets [relative].")
@click.option("--bind", help="HOST:PORT to listen on [127.0.0.1:8001].")
@click.option(
    "--workers", type=click.IntRange(min=1, max=MAX_WORKERS), help="Worker processes [1]."
)
@click.pass_obj
def serve_command(
    settings: Settings,
    docs: str | None,
    json_api: str | None,
    index: str | None,
    files_base_url: str | None,
    bind: str | None,
    workers: int | None,
) -> None:
    """Serve docs from the docs store and redirect legacy /packages/ URLs."""
    flags = {
        "docs": docs,
        "json_api": json_api,
        "index": index,
        "files_base_url": files_base_url,
        "bind": bind,
        "workers": workers,
    }
    updates = {name: value for name, value in flags.items() if value is not None}
    section = settings.conveyor.model_copy(update=updates)
    settings = settings.model_copy(update={"conveyor": section})
    try:
        address = Bind.parse(section.bind)
        app = build_app(settings)  # also validates the settings before any worker starts
    except ValueError as exc:
        raise click.UsageError(first_line(exc)) from exc
    legacy = "off" if app.legacy is None else ("JSON API" if section.json_api else "own index")
    where = f"docs {docs_url(settings)}; legacy {legacy}; {section.workers} worker(s)"
    banner = f"conveyor on {address.url()} ({where})"
    limits = ServerLimits.of(settings.http)
    if section.workers == 1:
        run([(app, address)], limits, lambda: status(banner))
        return
    export_to_environment(settings, "conveyor", updates)
    worker_app = "pythonhosted.conveyor.service:worker_app"
    run_workers(worker_app, address, section.workers, limits, lambda: status(banner))


@click.group()
def docs() -> None:
    """Publish project docs to a docs store."""


_store_option = click.option(
    "--store", "store_url", type=KEPT_URL, help="Docs store URL [conveyor.docs]."
)


def _store(settings: Settings, store_url: str | None) -> Store:
    try:
        return open_store(store_url or docs_url(settings), COMMAND_TIMEOUTS)
    except ValueError as exc:
        raise click.UsageError(first_line(exc)) from exc


@docs.command("upload")
@_store_option
@click.argument("project")
@click.argument("source", type=some_path())
@click.pass_obj
def upload_command(settings: Settings, store_url: str | None, project: str, source: Path) -> None:
    """Replace PROJECT's docs with SOURCE (a directory or a .zip)."""
    store = _store(settings, store_url)
    try:
        limits = UploadLimits.from_settings(settings.conveyor)
        retention = retention_of(settings.conveyor)
        result = asyncio.run(upload_docs(store, project, source, limits, retention))
    except (PublishError, StorageError, OSError) as exc:
        raise click.ClickException(first_line(exc)) from exc
    click.echo(f"{project}: {result.written} files written, {result.deleted} old files removed")


@docs.command("redirect")
@_store_option
@click.option("--include-path", is_flag=True, help="Append the requested path to BASE_URI.")
@click.option("--remove", is_flag=True, help="Remove PROJECT's redirect instead.")
@click.argument("project")
@click.argument("base_uri", required=False)
@click.pass_obj
def redirect_command(
    settings: Settings,
    store_url: str | None,
    include_path: bool,
    remove: bool,
    project: str,
    base_uri: str | None,
) -> None:
    """Redirect PROJECT's docs to BASE_URI (or --remove the redirect) in redirects.txt."""
    if remove == (base_uri is not None):
        raise click.UsageError("give either BASE_URI or --remove")
    redirect = None if base_uri is None else Redirect(base_uri, include_path)
    store = _store(settings, store_url)
    try:
        limit = settings.conveyor.redirects_max_bytes
        changed = asyncio.run(set_redirect(store, project, redirect, limit))
    except (PublishError, StorageError) as exc:
        raise click.ClickException(first_line(exc)) from exc
    if not changed:
        click.echo(f"{project}: unchanged")
        return
    action = "removed" if remove else "set"
    within = math.ceil(settings.conveyor.redirects_reload_interval) + 1  # + the check itself
    click.echo(f"{project}: redirect {action}, takes effect within {within} s")
