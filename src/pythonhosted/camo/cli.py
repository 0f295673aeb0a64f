"""``pythonhosted camo serve`` and ``pythonhosted camo sign``: flags over settings over env.

``camo serve`` takes go-camo's flags with go-camo's names and meanings (and go-camo's
``GOCAMO_*`` environment variables, which act as the flags they name), so an operator can swap
the binary and keep the command line. go-camo flags that cannot apply here are accepted with a
one-line note (they change nothing that matters) or refused with one line and exit 2 (they
ask for something camo does not do, such as listening with TLS).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from yarl import URL

from pythonhosted import __version__
from pythonhosted.camo.app import create_app
from pythonhosted.camo.errors import Refused
from pythonhosted.camo.policy import AddressPolicy
from pythonhosted.camo.rules import Rules
from pythonhosted.camo.signatures import sign_url
from pythonhosted.camo.upstream import UrlChecks
from pythonhosted.cliparams import some_path
from pythonhosted.config import (
    MAX_WORKERS,
    CamoSettings,
    Settings,
    export_to_environment,
    with_flags,
)
from pythonhosted.errortext import without_credentials
from pythonhosted.logsetup import configure_logging, status
from pythonhosted.web.allocator import serve_on_the_c_allocator
from pythonhosted.web.purges import shared_journal
from pythonhosted.web.server import Bind, ServerLimits, run, run_workers

#: go-camo flags that ask for what camo does not do: refused, with the reason
UNSUPPORTED = {
    "socket_listen": "--socket-listen: camo listens on TCP only (--bind)",
    "ssl_listen": "--ssl-listen: terminate TLS in front of camo (CDN or load balancer)",
    "ssl_key": "--ssl-key: terminate TLS in front of camo (CDN or load balancer)",
    "ssl_cert": "--ssl-cert: terminate TLS in front of camo (CDN or load balancer)",
    "quic": "--quic: camo speaks HTTP/1.1; terminate HTTP/3 in front of it",
}
#: go-camo flags accepted for compatibility that change nothing here: the note printed
NO_EFFECT = {
    "automaxprocs": "--automaxprocs has no effect: camo sizes itself with --workers",
    "no_debug_vars": "--no-debug-vars has no effect: camo has no /debug/vars endpoint",
    "no_log_ts": "--no-log-ts has no effect: log lines always carry a timestamp",
    "prof": "--prof has no effect: camo has no profiler endpoint",
}


def _key_file(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--key-file",
        type=some_path(dir_okay=False, exists=True),
        help="File holding the HMAC key (default: $PYTHONHOSTED_CAMO_KEY).",
    )(function)


def _key(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-k",
        "--key",
        envvar="GOCAMO_HMAC",
        help="HMAC key (go-camo's flag and $GOCAMO_HMAC; visible to `ps`: prefer the "
        "environment or --key-file).",
    )(function)


def _camo_settings(settings: Settings, **flags: Any) -> CamoSettings:
    """The camo section with the given (non-None) flags applied and validated."""
    overrides = {name: value for name, value in flags.items() if value is not None}
    if "key_file" in overrides and "key" not in overrides:
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
    """Flag values for the workers. A key given as a flag travels as the secret it is (a
    plain dump would mask it); a ``--key-file`` flag blanks ``key``, so a key from the
    environment or the TOML file cannot win over it there."""
    names = set(names)
    export_to_environment(settings, "camo", names - {"key"})
    os.environ["PYTHONHOSTED_LOG_LEVEL"] = settings.log_level
    if "key" in names and settings.camo.key is not None:
        os.environ["PYTHONHOSTED_CAMO__KEY"] = settings.camo.key.get_secret_value()
    elif "key_file" in names:
        os.environ["PYTHONHOSTED_CAMO__KEY"] = ""


def _refuse_or_note(ctx: click.Context, flags: dict[str, Any]) -> None:
    """One line and exit 2 for a go-camo flag camo cannot honour; a note for a no-op one."""
    for name, reason in UNSUPPORTED.items():
        if flags.pop(name) not in (None, False):
            click.echo(f"error: not supported: {reason}", err=True)
            ctx.exit(2)
    for name, note in NO_EFFECT.items():
        if flags.pop(name) not in (None, False):
            status(f"note: {note}", logging.WARNING)


def _print_version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        click.echo(f"pythonhosted camo {__version__}")
        ctx.exit(0)


@click.group()
def camo() -> None:
    """The image proxy for project descriptions (go-camo compatible)."""


def _flag(*names: str, env: str | None = None, **kwargs: Any) -> Callable[..., Any]:
    """An option that go-camo's ``GOCAMO_*`` variable also sets (``env``)."""
    return click.option(*names, envvar=env, show_envvar=env is not None, **kwargs)


_BOOL = {"is_flag": True, "default": None}


@camo.command()
@_flag("--bind", "--listen", "bind", env="GOCAMO_LISTEN",
       help="HOST:PORT to listen on (go-camo: --listen) [127.0.0.1:8002].")  # fmt: skip
@click.option(
    "--workers", type=click.IntRange(min=1, max=MAX_WORKERS), help="Worker processes (default 1)."
)
@_key
@_key_file
@_flag("--max-size", "max_size_kb", env="GOCAMO_MAX_SIZE", type=click.IntRange(min=0),
       help="Largest image in KB; 0 for no limit [5120].")  # fmt: skip
@_flag("--max-size-redirect", env="GOCAMO_MAX_SIZE_REDIRECT", is_flag=False,
       flag_value="original", default=None, metavar="[URL]",
       help="302 over-size images to URL (go-camo), or, given alone, to the image's own "
       "URL.")  # fmt: skip
@_flag("--timeout", env="GOCAMO_TIMEOUT", help="Deadline for the whole upstream response [4s].")
@_flag("--max-redirects", env="GOCAMO_MAX_REDIRECTS", type=click.IntRange(min=0),
       help="Redirects followed per request [3].")  # fmt: skip
@_flag("--idletimeout", "idle_timeout", env="GOCAMO_IDLETIMEOUT",
       help="go-camo's idle keep-alive timeout (frontend) [30s].")  # fmt: skip
@_flag("--readtimeout", "read_timeout", env="GOCAMO_READTIMEOUT",
       help="go-camo's request read timeout (frontend) [30s].")  # fmt: skip
@_flag("--allow-content-video/--no-allow-content-video", "allow_video",
       env="GOCAMO_ALLOW_CONTENT_VIDEO", default=None)  # fmt: skip
@_flag("--allow-content-audio/--no-allow-content-audio", "allow_audio",
       env="GOCAMO_ALLOW_CONTENT_AUDIO", default=None)  # fmt: skip
@_flag("--allow-credential-urls/--no-allow-credential-urls",
       env="GOCAMO_ALLOW_CREDENTIAL_URLS", default=None)  # fmt: skip
@_flag("--xfwd4", "--enable-xfwd4", "enable_xfwd4", env="GOCAMO_XFWD_FOR", **_BOOL,
       help="Pass X-Forwarded-For upstream (or the client's public address).")  # fmt: skip
@_flag("--no-fk", "disable_keepalives_frontend", env="GOCAMO_NO_FK", **_BOOL,
       help="Close every client connection after its response.")  # fmt: skip
@_flag("--no-bk", "disable_keepalives_backend", env="GOCAMO_NO_BK", **_BOOL,
       help="A new upstream connection for every request.")  # fmt: skip
@click.option("-H", "--header", "headers", multiple=True,
              help="'Name: value' added to every response.")  # fmt: skip
@_flag("--server-name", env="GOCAMO_SERVER_NAME", help="Server header value, also sent as Via.")
@_flag("--expose-server-version", env="GOCAMO_EXPOSE_SERVER_VERSION", **_BOOL,
       help="Add the version to the Server header.")  # fmt: skip
@_flag("--user-agent", env="GOCAMO_USER_AGENT", help="User-Agent sent upstream.")
@_flag("--filter-ruleset", env="GOCAMO_FILTER_RULESET",
       type=some_path(dir_okay=False, exists=True),
       help="go-camo allow/deny rules file (deny|s|example.com|i|/private/*).")  # fmt: skip
@_flag("--metrics/--no-metrics", env="GOCAMO_METRICS", default=None,
       help="Serve /metrics (on unless --no-metrics).")  # fmt: skip
@_flag("--log-json", env="GOCAMO_LOG_JSON", **_BOOL, help="Log one JSON object per line.")
@_flag("-v", "--verbose", env="GOCAMO_VERBOSE", **_BOOL, help="Debug logging.")
@click.option("--allow-network", "allow_networks", multiple=True,
              help="CIDR exempt from the private-address ban (tests, private "
              "deployments).")  # fmt: skip
@click.option("--cache-dir", type=some_path(file_okay=False),
              help="Turn the cache on, keeping images in DIR.")  # fmt: skip
@click.option("--cache-max-bytes", type=click.IntRange(min=0),
              help="Disk bytes the cache may hold [1 GiB]; 0 turns it off.")  # fmt: skip
@click.option("--cache-memory-bytes", type=click.IntRange(min=0),
              help="Memory bytes for hot small images [64 MiB].")  # fmt: skip
@click.option("--cache-object-max-bytes", type=click.IntRange(min=1),
              help="Largest image cached [5 MiB, and never over --max-size].")  # fmt: skip
@click.option("--cache-default-ttl", help="Freshness when upstream says nothing [1h].")
@click.option("--cache-max-ttl", help="Longest freshness whatever upstream says [168h].")
@click.option("--cache-stale-if-error",
              help="How long past its freshness an image may stand in for a failing upstream "
              "[1h].")  # fmt: skip
@click.option("-V", "--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print the version and exit.")  # fmt: skip
@_flag("--automaxprocs", env="GOCAMO_AUTOMAXPROCS", **_BOOL, hidden=True)
@_flag("--no-debug-vars", env="GOCAMO_NO_DEBUG_VARS", **_BOOL, hidden=True)
@_flag("--no-log-ts", env="GOCAMO_NO_LOG_TS", **_BOOL, hidden=True)
@_flag("--prof", env="GOCAMO_PROF", **_BOOL, hidden=True)
@_flag("--socket-listen", env="GOCAMO_SOCKET_LISTEN", hidden=True)
@_flag("--ssl-listen", env="GOCAMO_SSL_LISTEN", hidden=True)
@_flag("--ssl-key", env="GOCAMO_SSL_KEY", hidden=True)
@_flag("--ssl-cert", env="GOCAMO_SSL_CERT", hidden=True)
@_flag("--quic", env="GOCAMO_QUIC", **_BOOL, hidden=True)
@click.pass_context
def serve(
    ctx: click.Context,
    /,
    headers: tuple[str, ...],
    allow_networks: tuple[str, ...],
    log_json: bool | None,
    verbose: bool | None,
    **flags: Any,
) -> None:
    """Serve the proxy until SIGINT/SIGTERM."""
    settings: Settings = ctx.obj
    serve_on_the_c_allocator()  # crowds of one image's clients (web.allocator says why)
    _refuse_or_note(ctx, flags)
    if headers:
        flags["headers"] = {**settings.camo.headers, **_parse_headers(headers)}
    if allow_networks:
        flags["allow_networks"] = [*settings.camo.allow_networks, *allow_networks]
    if log_json or verbose:
        settings = settings.model_copy(
            update={
                "log_json": settings.log_json or bool(log_json),
                "log_level": "DEBUG" if verbose else settings.log_level,
            }
        )
        configure_logging(json=settings.log_json, level=settings.log_level)
    camo_settings = _camo_settings(settings, **flags)
    try:
        bind = Bind.parse(camo_settings.bind)
        # Also validates the key and the rules before any worker starts.
        app = create_app(camo_settings, access_log=settings.http.access_log)
    except (OSError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc  # the address, key, rules or cache
    workers = camo_settings.workers
    banner = f"camo listening on {bind.url()} ({workers} worker(s))"
    limits = _limits(settings, camo_settings)
    if workers == 1:
        run([(app, bind)], limits, lambda: status(banner))
        return
    exported = settings.model_copy(update={"camo": camo_settings})
    _export(exported, (name for name, value in flags.items() if value is not None))
    with shared_journal("camo"):  # a PURGE taken by any worker empties every one's cache
        announce = lambda: status(banner)  # noqa: E731
        run_workers(
            "pythonhosted.camo.service:worker_app",
            bind,
            workers,
            limits,
            announce,
            quick=app.quick is not None,  # its workers on our server, as this process would be
        )


def _limits(settings: Settings, camo: CamoSettings) -> ServerLimits:
    """The server's limits, with go-camo's frontend timeouts where they were given: one
    deadline governs both reading a request head and waiting for the next one on a kept-alive
    connection here, so the shorter of the two applies."""
    limits = ServerLimits.of(settings.http)
    given = [
        getattr(camo, name)
        for name in ("idle_timeout", "read_timeout")
        if name in camo.model_fields_set
    ]
    if not given:
        return limits
    return dataclasses.replace(limits, header_timeout=min(given))


@camo.command()
@click.argument("url")
@_key
@_key_file
@click.option("--base", default="", help="Public prefix of the proxy, e.g. https://camo.example.")
@click.option("--base64", "use_base64", is_flag=True, help="Base64 form instead of hex.")
@click.pass_context
def sign(
    ctx: click.Context,
    url: str,
    key: str | None,
    key_file: Path | None,
    base: str,
    use_base64: bool,
) -> None:
    """Print the camo URL for URL; refuse (exit 2) a URL camo would refuse to fetch."""
    camo_settings = _camo_settings(ctx.obj, key=key, key_file=key_file)
    try:
        hmac_key = camo_settings.hmac_key()
        checks = UrlChecks(
            AddressPolicy.allowing(camo_settings.allow_networks),
            Rules.load(camo_settings.filter_ruleset),
            camo_settings.allow_credential_urls,
        )
    except (OSError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc  # a key or a ruleset: configuration
    shown = without_credentials(url)
    try:
        checks.check(URL(url))
    except Refused as refusal:
        click.echo(f"error: camo would refuse {shown!r}: {refusal.detail}", err=True)
        ctx.exit(2)
    except (ValueError, TypeError):
        click.echo(f"error: camo would refuse {shown!r}: not a valid URL", err=True)
        ctx.exit(2)
    click.echo(sign_url(url, hmac_key, base=base, encoding="base64" if use_base64 else "hex"))
