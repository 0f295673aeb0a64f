"""``pythonhosted files``: upload distributions, run the files edge (managing what was uploaded
is in :mod:`.manage_cli`).

The edge and its server (granian, the metrics, the geo table) are imported by ``serve``
alone: an upload or a listing, one short process each, has no use for them.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import click

from pythonhosted.cliparams import KEPT_URL, URL, some_path
from pythonhosted.config import MAX_WORKERS, Settings, export_to_environment
from pythonhosted.distributions import InvalidDistribution
from pythonhosted.files.manage_cli import (
    STORE_HELP,
    delete_command,
    list_command,
    open_primary,
    unyank_command,
    yank_command,
)
from pythonhosted.files.upload import SourceChanged, TooLarge, UploadRefused, upload
from pythonhosted.logsetup import status
from pythonhosted.storage import StorageError
from pythonhosted.web.allocator import serve_on_the_c_allocator


@click.group()
def files() -> None:
    """The files edge (files.pythonhosted.org), and managing what it serves."""


for command in (list_command, yank_command, unyank_command, delete_command):
    files.add_command(command)


@files.command("upload")
@click.option("--store", "store_url", type=KEPT_URL, help=STORE_HELP)
@click.argument("paths", nargs=-1, required=True, type=some_path())
@click.pass_obj
def upload_command(settings: Settings, store_url: str | None, paths: tuple[Path, ...]) -> None:
    """Check distributions and store them at their hashed keys; print one URL path per file."""
    store = open_primary(settings, store_url)
    failures = 0
    for path in paths:
        try:
            status = path.stat()
            if not stat.S_ISREG(status.st_mode):  # a pipe can be read once, the upload reads thrice
                click.echo(f"error: {path}: not a regular file", err=True)
                failures += 1
                continue
            record = asyncio.run(
                upload(
                    store,
                    path.name,
                    path,
                    metadata_max_bytes=settings.files.upload_metadata_max_bytes,
                    max_bytes=settings.files.upload_max_bytes,  # counted as read, not stat'ed
                )
            )
        except OSError as exc:
            click.echo(f"error: {path}: {exc.strerror}", err=True)
            failures += 1
            continue
        except (InvalidDistribution, TooLarge, UploadRefused, SourceChanged) as exc:
            # each names the file
            click.echo(f"error: {exc}", err=True)
            failures += 1
            continue
        except StorageError as exc:
            click.echo(f"error: {path.name}: store: {exc}", err=True)
            failures += 1
            continue
        click.echo(record.path)
    if failures:
        raise SystemExit(1)


@files.command("serve")
@click.option("--primary", type=URL, help="Primary store URL.")
@click.option(
    "--archive", type=URL, help="Archive store URL (read when the primary misses or fails)."
)
@click.option("--logs", type=URL, help="Log store URL for download batches.")
@click.option("--bind", help="HOST:PORT to listen on [127.0.0.1:8000].")
@click.option(
    "--workers", type=click.IntRange(min=1, max=MAX_WORKERS), help="Worker processes [1]."
)
@click.pass_obj
def serve_command(
    settings: Settings,
    primary: str | None,
    archive: str | None,
    logs: str | None,
    bind: str | None,
    workers: int | None,
) -> None:
    """Serve /packages/… from the stores, logging every download."""
    serve_on_the_c_allocator()  # crowds of slow downloads (web.allocator says why)
    from pythonhosted.files.service import build_app
    from pythonhosted.web.purges import shared_journal
    from pythonhosted.web.server import Bind, ServerLimits, run, run_workers

    flags = {"primary": primary, "archive": archive, "logs": logs, "bind": bind, "workers": workers}
    updates = {name: value for name, value in flags.items() if value}
    settings = settings.model_copy(update={"files": settings.files.model_copy(update=updates)})
    try:
        edge = build_app(settings)  # also validates settings before workers start
        address = Bind.parse(settings.files.bind)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    banner = f"files edge on {address.url()} ({settings.files.workers} worker(s))"
    limits = ServerLimits.of(settings.http)
    if settings.files.workers == 1:
        run([(edge, address)], limits, lambda: status(banner))
        return
    export_to_environment(settings, "files", updates)
    worker_app = "pythonhosted.files.service:worker_app"
    with shared_journal("files"):  # a PURGE taken by any worker empties every cache
        run_workers(
            worker_app,
            address,
            settings.files.workers,
            limits,
            lambda: status(banner),
            quick=True,
        )
