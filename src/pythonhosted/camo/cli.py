"""``pythonhosted camo serve`` and ``pythonhosted camo sign``: flags over settings over env.

Flag names follow go-camo's where it has one, so operators can carry their command lines over.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from pythonhosted.camo.app import create_app
from pythonhosted.camo.urls import sign_url
from pythonhosted.config import CamoSettings, Settings, export_to_environment, with_flags
from pythonhosted.web.server import Bind, ServerLimits, run, run_workers

_key_file = click.option(
    "--key-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File holding the HMAC key (default: $PYTHONHOSTED_CAMO_KEY).",
)


def _camo_settings(settings: Settings, **flags: Any) -> CamoSettings:
    """The camo section with the given (non-None) flags applied and validated."""
    overrides = {name: value for name, value in flags.items() if value is not None}
    if "key_file" in overrides:
        overrides["key"] = None  # a key file named on the command line beats a key from env
    options = click.get_current_context().command.params
    names = {option.name: option.opts[-1] for option in options if option.name}
    return with_flags(settings, "camo", overrides, names).camo  # ConfigError names the flag


def _parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected 'Name: value', got {value!r}", param_hint="-H")
        headers[name.strip()] = text.strip()
    return headers


def _export(settings: Settings, names: Iterable[str]) -> None:
    """Flag values for the workers; a ``--key-file`` flag also blanks ``key``, so a key from
    the environment or the TOML file cannot win over it there."""
    names = set(names)
    export_to_environment(settings, "camo", names)
    if "key_file" in names:
        os.environ["PYTHONHOSTED_CAMO__KEY"] = ""


@click.group()
def camo() -> None:
    """The image proxy for project descriptions (go-camo compatible)."""


@camo.command()
@click.option("--bind", help="HOST:PORT to listen on (default 127.0.0.1:8002).")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes (default 1).")
@_key_file
@click.option("--max-size", "max_size_kb", type=int, help="Largest image in KB (default 5120).")
@click.option("--timeout", help="Deadline for the whole upstream response, e.g. 4s (default).")
@click.option("--max-redirects", type=int, help="Redirects followed per request (default 3).")
@click.option("--allow-content-video/--no-allow-content-video", "allow_video", default=None)
@click.option("--allow-content-audio/--no-allow-content-audio", "allow_audio", default=None)
@click.option("--allow-credential-urls/--no-allow-credential-urls", default=None)
@click.option(
    "-H", "--header", "headers", multiple=True, help="'Name: value' added to every response."
)
@click.option("--server-name", help="Server header value, also used in Via.")
@click.option("--user-agent", help="User-Agent sent upstream.")
@click.option(
    "--filter-ruleset",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="go-camo allow/deny rules file (allow|host|i|*.example.com).",
)
@click.option(
    "--allow-network",
    "allow_networks",
    multiple=True,
    help="CIDR exempt from the private-address ban (tests, private deployments); repeatable.",
)
@click.pass_obj
def serve(
    settings: Settings,
    /,
    headers: tuple[str, ...],
    allow_networks: tuple[str, ...],
    **flags: Any,
) -> None:
    """Serve the proxy until SIGINT/SIGTERM."""
    if headers:
        flags["headers"] = {**settings.camo.headers, **_parse_headers(headers)}
    if allow_networks:
        flags["allow_networks"] = [*settings.camo.allow_networks, *allow_networks]
    camo_settings = _camo_settings(settings, **flags)
    try:
        bind = Bind.parse(camo_settings.bind)
        app = create_app(camo_settings)  # also validates key and rules before any worker starts
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    workers = camo_settings.workers
    banner = f"camo listening on {bind.url()} ({workers} worker(s))"
    limits = ServerLimits.of(settings.http)
    if workers == 1:
        run([(app, bind)], limits, lambda: click.echo(banner, err=True))
        return
    exported = settings.model_copy(update={"camo": camo_settings})
    _export(exported, (name for name, value in flags.items() if value is not None))
    run_workers(
        "pythonhosted.camo.app:worker_app",
        bind,
        workers,
        limits,
        lambda: click.echo(banner, err=True),
    )


@camo.command()
@click.argument("url")
@_key_file
@click.option("--base", default="", help="Public prefix of the proxy, e.g. https://camo.example.")
@click.option("--base64", "use_base64", is_flag=True, help="Base64 form instead of hex.")
@click.pass_obj
def sign(settings: Settings, url: str, key_file: Path | None, base: str, use_base64: bool) -> None:
    """Print the camo URL for URL."""
    camo_settings = _camo_settings(settings, key_file=key_file)
    try:
        key = camo_settings.hmac_key()
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(sign_url(url, key, base=base, encoding="base64" if use_base64 else "hex"))
