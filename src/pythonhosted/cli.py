"""The ``pythonhosted`` command: one group per service plus ``serve`` and ``stats``.

Thin by design: it parses flags into settings and calls the services' public functions.
"""

from __future__ import annotations

from pathlib import Path

import click

from pythonhosted import __version__
from pythonhosted.camo.cli import camo
from pythonhosted.config import Settings, load_settings
from pythonhosted.files.cli import files
from pythonhosted.linehaul.cli import linehaul
from pythonhosted.logsetup import configure_logging
from pythonhosted.serve import serve


@click.group()
@click.version_option(__version__, prog_name="pythonhosted")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file (also $PYTHONHOSTED_CONFIG).",
)
@click.option("--log-json/--no-log-json", default=None, help="Log one JSON object per line.")
@click.pass_context
def main(ctx: click.Context, config_file: Path | None, log_json: bool | None) -> None:
    """Serve PyPI's package files and docs, and turn downloads into analytics."""
    try:
        settings = load_settings(config_file, log_json=log_json)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from exc
    configure_logging(json=settings.log_json, level=settings.log_level)
    ctx.obj = settings


@main.command("config")
@click.pass_obj
def show_config(settings: Settings) -> None:
    """Print the effective settings as JSON (secrets masked)."""
    click.echo(settings.model_dump_json(indent=2))


main.add_command(camo)
main.add_command(files)


@main.command("serve")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the embedded stores live [./var].",
)
@click.pass_obj
def serve_command(settings: Settings, data_dir: Path | None) -> None:
    """Run the whole system with embedded defaults (local stores under the data dir)."""
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    try:
        serve(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


main.add_command(linehaul)
