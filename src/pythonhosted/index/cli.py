"""``pythonhosted index``: serve the simple repository API on its own."""

from __future__ import annotations

import click

from pythonhosted.cliparams import URL
from pythonhosted.config import Settings
from pythonhosted.index.service import build_app
from pythonhosted.logsetup import status
from pythonhosted.web.server import Bind, ServerLimits, run


@click.group()
def index() -> None:
    """The simple repository API (PEP 503/691) over what `files upload` stored."""


@index.command("serve")
@click.option("--primary", type=URL, help="Store holding the uploads (and their catalog).")
@click.option("--logs", type=URL, help="Log store for simple|… request lines.")
@click.option("--files-url", help="Base URL of the files edge for file links [this host].")
@click.option("--bind", help="HOST:PORT to listen on [127.0.0.1:8003].")
@click.pass_obj
def serve_command(
    settings: Settings,
    primary: str | None,
    logs: str | None,
    files_url: str | None,
    bind: str | None,
) -> None:
    """Serve /simple/ from the catalog, logging each project-page request."""
    files = {k: v for k, v in {"primary": primary, "logs": logs}.items() if v}
    index_updates = {k: v for k, v in {"files_url": files_url, "bind": bind}.items() if v}
    settings = settings.model_copy(
        update={
            "files": settings.files.model_copy(update=files),
            "index": settings.index.model_copy(update=index_updates),
        }
    )
    try:
        app = build_app(settings)
        address = Bind.parse(settings.index.bind)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    banner = f"simple index on {address.url()}/simple/"
    run([(app, address)], ServerLimits.of(settings.http), lambda: status(banner))
