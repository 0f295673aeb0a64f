"""The ``pythonhosted`` command: one group per service plus ``serve`` and ``stats``.

Thin by design: it parses flags into settings and calls the services' public functions.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any

import click

from pythonhosted import __version__
from pythonhosted.cliparams import some_path
from pythonhosted.config import Settings, load_settings
from pythonhosted.errortext import first_line
from pythonhosted.localdirs import UnwritableDirectory
from pythonhosted.logsetup import configure_logging, error_line, json_wanted, log_stray_errors
from pythonhosted.settings_errors import ConfigError
from pythonhosted.stdstreams import (
    SIGPIPE_STATUS,
    flush_output,
    hold_closed_descriptors,
    reader_left,
)
from pythonhosted.storage import StorageError
from pythonhosted.warehouse import engine
from pythonhosted.web.allocator import return_memory_promptly, running_as_command
from pythonhosted.web.listener import ListenError

log = logging.getLogger(__name__)

# Each service's commands live with the service and are imported only when used: a worker
# process of one service never pays for another's libraries (memory, start-up time).
SERVICE_COMMANDS = {
    "camo": "pythonhosted.camo.cli:camo",
    "conveyor": "pythonhosted.conveyor.cli:conveyor",
    "docs": "pythonhosted.conveyor.cli:docs",
    "files": "pythonhosted.files.cli:files",
    "index": "pythonhosted.index.cli:index",
    "linehaul": "pythonhosted.linehaul.cli:linehaul",
    "stats": "pythonhosted.warehouse.cli:stats",
    "stats-web": "pythonhosted.stats_web.cli:stats_web",
}
# What `pythonhosted --help` lists for them: each command's own first paragraph (a test holds
# them equal), so that listing the commands imports none of the services (0.5 s of CPU, not
# 0.2 s).
SERVICE_SUMMARIES = {
    "camo": "The image proxy for project descriptions (go-camo compatible).",
    "conveyor": "Legacy package URLs and docs hosting (pythonhosted.org).",
    "docs": "Publish project docs to a docs store.",
    "files": "The files edge (files.pythonhosted.org), and managing what it serves.",
    "index": "The simple repository API (PEP 503/691) over what `files upload` stored.",
    "linehaul": "Turn CDN log lines into download analytics rows.",
    "stats": "Downloads of PROJECT over a date range, broken down --by fields (or --top N "
    "projects, or the total over an --author's, --maintainer's or --org's projects), or with "
    "--coverage which UTC hours (--by day: days) are complete, gaps, or pending.",
    "stats-web": "Download stats on the web: pages, a pypistats-compatible JSON API, badges.",
}


# A path that cannot be used as configured: the configuration's fault, as a usage error is.
_PATH_ERRORS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}
)


class ErrorLine(click.ClickException):
    """An error that ends a command, exit status 1, shown as
    :func:`~pythonhosted.logsetup.error_line` shows it: ``Error: …``, or one JSON record
    under ``--log-json`` (``json``, set once the group knows)."""

    json = False

    def show(self, file: IO[Any] | None = None) -> None:
        error_line(self.format_message(), json=self.json)


class UsageLine(ErrorLine):
    """A usage or configuration error shown as one line, exit status 2.

    Click prints a usage banner and a hint above a usage error; an operator reading a log (or
    a supervisor's status line) gets the reason in one line instead.
    """

    exit_code = 2


class LazyGroup(click.Group):
    """A group whose service subcommands are imported on first use.

    It also turns what a command lets through into one line: usage and configuration errors,
    addresses that cannot be served and paths that cannot be used as configured (exit
    status 2), store failures, which name their store, and other system errors (exit status 1).
    Anything else is a case no command foresaw (``stats --days`` of 20 digits overflowed a
    date, ``files serve --workers`` of 20 digits overflowed granian): one line naming the
    exception, exit status 1, and the traceback in the log at DEBUG level.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Click's, with the group's own flags' errors in one line too: a ``--config`` that
        is a directory had click's usage banner, and ``--help`` or ``--version`` written to
        a full disk a traceback (both come before :meth:`invoke`)."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            line: ErrorLine = UsageLine(exc.format_message())
        except BrokenPipeError:
            reader_left()
        except OSError as exc:
            line = ErrorLine(f"stdout: {exc.strerror}")
        line.json = json_wanted()
        raise line

    def invoke(self, ctx: click.Context) -> object:
        try:
            return self._invoke_in_one_line(ctx)
        except click.ClickException as exc:
            line = exc if isinstance(exc, ErrorLine) else ErrorLine(exc.format_message())
            if exc.exit_code != line.exit_code:
                raise  # a status of its own (none today): shown as click shows it
            line.json = json_wanted(ctx.find_root().params.get("log_json"))
            raise line from exc

    def _invoke_in_one_line(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise UsageLine(exc.format_message()) from exc
        except (ConfigError, ListenError, UnwritableDirectory) as exc:
            raise UsageLine(str(exc)) from exc
        except StorageError as exc:  # not handled by the command: still one line
            raise click.ClickException(first_line(exc)) from exc
        except BrokenPipeError:  # any command's output piped to `head`
            reader_left()
        except OSError as exc:
            line = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
            if exc.errno in _PATH_ERRORS:  # e.g. a read-only or misplaced data dir
                raise UsageLine(line) from exc
            raise click.ClickException(line) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if engine.out_of_memory(exc):
                raise click.ClickException(
                    f"the warehouse needs more memory than duckdb.memory_limit "
                    f"({engine.memory_limit()}) allows: {first_line(exc)}"
                ) from exc
            log.debug("unforeseen error", exc_info=True)
            raise click.ClickException(
                f"{type(exc).__name__}: {first_line(exc)} "
                "(PYTHONHOSTED_LOG_LEVEL=DEBUG logs the traceback)"
            ) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SERVICE_COMMANDS})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's command list, with stand-ins carrying the services' summaries in place of
        the services' commands, which would have to be imported to be read."""
        commands = [
            (name, click.Command(name, help=SERVICE_SUMMARIES[name]))
            if name in SERVICE_SUMMARIES
            else (name, self.commands[name])
            for name in self.list_commands(ctx)
        ]
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        rows = [(name, cmd.get_short_help_str(limit)) for name, cmd in commands if not cmd.hidden]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SERVICE_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="pythonhosted")
@click.option(
    "--config",
    "config_file",
    type=some_path(dir_okay=False),
    help="TOML settings file (also $PYTHONHOSTED_CONFIG).",
)
@click.option("--log-json/--no-log-json", default=None, help="Log one JSON object per line.")
@click.pass_context
def main(ctx: click.Context, config_file: Path | None, log_json: bool | None) -> None:
    """Serve PyPI's package files and docs, and turn downloads into analytics."""
    settings = load_settings(config_file, log_json=log_json)  # ConfigError: one line, status 2
    configure_logging(json=settings.log_json, level=settings.log_level)
    engine.configure(settings.duckdb)
    ctx.obj = settings


@main.command("config")
@click.pass_obj
def show_config(settings: Settings) -> None:
    """Print the effective settings as JSON (secrets masked)."""
    click.echo(settings.model_dump_json(indent=2))


@main.command("serve")
@click.option(
    "--data-dir",
    type=some_path(file_okay=False),
    help="Where the embedded stores live [./var].",
)
@click.pass_obj
def serve_command(settings: Settings, data_dir: Path | None) -> None:
    """Run the whole system with embedded defaults (local stores under the data dir)."""
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    from pythonhosted.serve import serve  # the all-in-one imports every service

    try:
        serve(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def run() -> None:
    """The console entry point: ``main``, then an exit that skips interpreter finalization.

    Rust extensions keep runtime threads (obstore's and granian's tokio runtimes) that can
    race Python's finalization and abort the process (SIGABRT) after its work is done, which
    turns a successful command into a failed one. Everything worth keeping is flushed first.
    Servers' memory settings go into the environment before any command imports granian.
    """
    return_memory_promptly()
    running_as_command()
    hold_closed_descriptors()
    log_stray_errors()
    try:
        main()
        code: int = 0
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    logging.shutdown()
    unwritten = flush_output()
    if code == 0 and isinstance(unwritten, BrokenPipeError):
        code = SIGPIPE_STATUS  # the reader left before the last of the output
    elif code == 0 and unwritten is not None:
        error_line(f"stdout: {unwritten.strerror}", json=json_wanted())
        code = 1
    sys.stderr.flush()
    os._exit(code)
