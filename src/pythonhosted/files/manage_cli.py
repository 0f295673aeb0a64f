"""``pythonhosted files list|yank|unyank|delete``: manage what ``files upload`` stored.

Each takes ``--store URL`` (default ``files.primary``). Output is one line per file on stdout;
errors are one line each on stderr with exit 1. The HTTP client (aiohttp) and the table
renderer (rich) are imported by the commands that use them: ``files serve`` loads this module
too, and they cost it most of a second of start-up. The edge itself (its server, metrics and
geo table) only for ``delete``'s purge, which reads the edge's purge secret.
"""

from __future__ import annotations

import asyncio
import io
import sys
import textwrap
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import orjson

from pythonhosted.catalog import FileRecord
from pythonhosted.cliparams import KEPT_URL, URL
from pythonhosted.config import Settings
from pythonhosted.distributions import HASHED_PATH
from pythonhosted.files.manage import (
    NothingMatches,
    delete,
    listing,
    log_delete,
    select,
    set_yanked,
)
from pythonhosted.storage import COMMAND_TIMEOUTS, StorageError, Store, open_store
from pythonhosted.web.listener import Bind

if TYPE_CHECKING:
    from pythonhosted.files.purge import PurgeOutcome

T = TypeVar("T")
STORE_HELP = "Store URL, e.g. file:///srv/files [files.primary]."
# Failed purges said one line each, up to this many: a release of thousands of files on an
# edge that refuses them all would otherwise bury the rest of what the command says.
FAILURES_SHOWN = 20


def open_primary(settings: Settings, store_url: str | None) -> Store:
    """The store a command works on: ``--store``, else the configured primary."""
    url = store_url or settings.files.primary
    if not url:
        raise click.UsageError("no store: pass --store URL or set PYTHONHOSTED_FILES__PRIMARY")
    try:
        return open_store(url, COMMAND_TIMEOUTS)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; a store failure or a name that matches nothing is one line and exit 1."""
    try:
        return asyncio.run(work)
    except NothingMatches as exc:
        _fail(str(exc))
    except StorageError as exc:
        _fail(f"store: {exc}")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


@click.command("list")
@click.option("--store", "store_url", type=URL, help=STORE_HELP)
@click.option("--project", help="Only this project's files.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def list_command(settings: Settings, store_url: str | None, project: str | None, fmt: str) -> None:
    """List uploaded files (all projects, or one), shown as they are read: a table's columns
    are aligned within each block of 1,000 files."""
    rows = _JsonRows() if fmt == "json" else _TableRows()
    _run(_show(listing(open_primary(settings, store_url), project), rows))


# Rows written at once: a catalog of millions of files goes out as it is read, in blocks.
BLOCK_ROWS = 1000


async def _show(projects: AsyncIterator[list[FileRecord]], rows: _JsonRows | _TableRows) -> None:
    block: list[FileRecord] = []
    async for records in projects:
        block += records
        if len(block) >= BLOCK_ROWS:
            click.echo(rows.block(block), nl=False)
            block = []
    click.echo(rows.block(block) + rows.end(), nl=False)


class _JsonRows:
    """``{"files": [...]}`` as ``orjson`` indents it, written a block of rows at a time."""

    def __init__(self) -> None:
        self.shown = False

    def block(self, records: list[FileRecord]) -> str:
        parts = [] if self.shown else ['{\n  "files": [']
        for record in records:
            text = orjson.dumps(_row(record), option=orjson.OPT_INDENT_2).decode()
            parts.append(("," if self.shown else "") + "\n" + textwrap.indent(text, "    "))
            self.shown = True
        return "".join(parts)

    def end(self) -> str:
        return "\n  ]\n}\n" if self.shown else "]\n}\n"


def _row(record: FileRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


class _TableRows:
    """A table, its header above the first block (also when there are no rows)."""

    def __init__(self) -> None:
        self.header = True

    def block(self, records: list[FileRecord]) -> str:
        if not records and not self.header:
            return ""
        text = _table(records, self.header)
        self.header = False
        return text

    def end(self) -> str:
        return ""


def _table(records: list[FileRecord], header: bool) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    grid = Table(box=box.SIMPLE_HEAD, show_header=header, show_edge=header)
    for name in ("project", "version", "filename", "size", "uploaded", "yanked"):
        grid.add_column(name, justify="right" if name == "size" else "left", no_wrap=True)
    for r in records:
        yanked = (f"yes: {r.yanked_reason}" if r.yanked_reason else "yes") if r.yanked else ""
        grid.add_row(r.project, r.version, r.filename, str(r.size), r.upload_time, yanked)
    buffer = io.StringIO()
    Console(file=buffer, width=1000, color_system=None, highlight=False).print(grid)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    return "\n".join(lines).strip("\n") + "\n"


@click.command("yank")
@click.argument("release", metavar="PROJECT==VERSION")
@click.option("--store", "store_url", type=KEPT_URL, help=STORE_HELP)
@click.option("--reason", help="Why (shown by installers that skip it).")
@click.pass_obj
def yank_command(
    settings: Settings, release: str, store_url: str | None, reason: str | None
) -> None:
    """Yank a release (PEP 592): installers skip it unless pinned with ==."""
    store = open_primary(settings, store_url)
    for record in _run(_yank(store, release, True, reason)):
        click.echo(f"yanked {record.filename}")


@click.command("unyank")
@click.argument("release", metavar="PROJECT==VERSION")
@click.option("--store", "store_url", type=KEPT_URL, help=STORE_HELP)
@click.pass_obj
def unyank_command(settings: Settings, release: str, store_url: str | None) -> None:
    """Undo a yank."""
    store = open_primary(settings, store_url)
    for record in _run(_yank(store, release, False, None)):
        click.echo(f"unyanked {record.filename}")


async def _yank(store: Store, spec: str, yanked: bool, reason: str | None) -> list[FileRecord]:
    return await set_yanked(store, await select(store, spec), yanked, reason)


@click.command("delete")
@click.argument("spec", metavar="FILENAME|PROJECT==VERSION|/packages/…")
@click.option("--store", "store_url", type=KEPT_URL, help=STORE_HELP)
@click.option("--yes", is_flag=True, help="Do not ask (required when stdin is not a terminal).")
@click.option("--from-archive", is_flag=True, help="Delete the archive's copy too.")
@click.option("--archive", "archive_url", type=KEPT_URL, help="Archive store URL [files.archive].")
@click.pass_obj
def delete_command(
    settings: Settings,
    spec: str,
    store_url: str | None,
    yes: bool,
    from_archive: bool,
    archive_url: str | None,
) -> None:
    """Delete files: their catalog records, the objects and their .metadata, and every files
    edge's cached copy (PURGE to files.purge_urls, default the edge at files.bind)."""
    primary = open_primary(settings, store_url)
    archive = _archive(settings, archive_url) if from_archive else None
    targets = _run(_targets(primary, spec))
    if not yes:
        if not sys.stdin.isatty():
            _fail("refusing to delete without --yes (stdin is not a terminal)")
        names = ", ".join(record.filename if record else path for record, path in targets)
        click.confirm(f"Delete {names}?", abort=True, err=True)
    _run(delete(primary, archive, targets))
    outcomes = _purge(settings, [path for _, path in targets])
    failed = False
    for record, path in targets:
        mine = outcomes.get(path, [])
        failures = [o for o in mine if not o.ok and not (o.refused and _default_edges(settings))]
        log_delete(
            primary,
            record,
            path,
            from_archive=from_archive,
            purged=[o.url for o in mine if o.ok],
            purge_failed=[f"{o.url}: {o.reason}" for o in failures],
        )
        click.echo(f"deleted {path}")
        failed = failed or bool(failures)
    if failed:
        raise SystemExit(1)


async def _targets(store: Store, spec: str) -> list[tuple[FileRecord | None, str]]:
    """What to delete; a hashed path with no record left (a delete that failed half-way, an
    object that never had one) is deleted all the same."""
    try:
        return [(record, record.path) for record in await select(store, spec)]
    except NothingMatches:
        if HASHED_PATH.match(spec):
            return [(None, spec)]
        raise


def _archive(settings: Settings, archive_url: str | None) -> Store:
    url = archive_url or settings.files.archive
    if not url:
        raise click.UsageError("--from-archive needs --archive URL or files.archive")
    try:
        return open_store(url, COMMAND_TIMEOUTS)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _default_edges(settings: Settings) -> bool:
    return settings.files.purge_urls is None


def _purge(settings: Settings, paths: list[str]) -> dict[str, list[PurgeOutcome]]:
    """PURGE the paths and their .metadata on every edge; report failures, one line each.
    The outcomes by path (its own and its .metadata's, on every edge): found by position,
    since a release can have thousands of files and matching each outcome's URL against
    every path was quadratic (23 s of a 5,000-file delete)."""
    from pythonhosted.files.purge import purge
    from pythonhosted.files.service import purge_secret

    edges = settings.files.purge_urls
    if edges is None:
        edges = [Bind.parse(settings.files.bind).url()]
    if not edges:
        return {}
    try:
        secret = purge_secret(settings)
    except (OSError, ValueError) as exc:
        _fail(f"purge secret: {exc}")
    if secret is None:
        message = "no purge secret (files.purge_secret, or DATA/purge.key of a running edge)"
        if not _default_edges(settings):
            _fail(f"{message}: edges not told")
        click.echo(f"note: {message}: no edge told", err=True)
        return {}
    every = [p for path in paths for p in (path, path + ".metadata")]
    outcomes = asyncio.run(purge(edges, secret, every))
    absent = set()
    failures = 0
    for outcome in outcomes:
        if outcome.ok:
            continue
        if outcome.refused and _default_edges(settings):
            absent.add(outcome.url.split("/packages/", 1)[0])
            continue
        failures += 1
        if failures <= FAILURES_SHOWN:
            click.echo(f"error: PURGE {outcome.url}: {outcome.reason}", err=True)
    if failures > FAILURES_SHOWN:
        hidden = failures - FAILURES_SHOWN
        click.echo(f"error: {hidden} more purges failed (the delete log names each)", err=True)
    for edge in sorted(absent):
        click.echo(f"note: no files edge at {edge}: nothing cached there", err=True)
    by_path: dict[str, list[PurgeOutcome]] = {path: [] for path in paths}
    for index, outcome in enumerate(outcomes):  # edge by edge, each in the order of `every`
        by_path[paths[index % len(every) // 2]].append(outcome)
    return by_path
