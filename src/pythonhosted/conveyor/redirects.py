"""The docs redirect table: ``redirects.txt`` at the root of the docs store (spec rule 14).

JSON lines, one ``{"project_name", "base_uri", "include_path"}`` object per line, blank lines
ignored. The service checks it every interval (one ``info``: a HEAD on a cloud store, a
``stat`` on a local one) and re-reads it only when its version changed. A missing, unreadable,
oversized or malformed file keeps the table in service (logged and counted in
``conveyor_redirect_table_failures``), so an edit can never empty the table by mistake.

Targets go out in ``Location`` headers as they are, so one check,
:func:`~pythonhosted.conveyor.targets.check_target`, guards both ``docs redirect`` (which
refuses a bad target) and the service (which skips a line with a bad target, logs it with its
line number and counts it, and serves the other lines).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.conveyor.targets import InvalidTarget, check_target
from pythonhosted.storage import NotFound, StorageError, Store

log = logging.getLogger(__name__)

REDIRECTS_KEY = "redirects.txt"
# The default of ``conveyor.redirects_max_bytes``: ~1,000,000 lines of ~128 bytes (parsed in
# ~7 s of CPU in a thread, ~250 MB held). It was 16 MB, "~150,000 entries of ~100 bytes":
# real lines are ~128 bytes, so a table of 130,000 projects was refused whole.
MAX_BYTES = 128 * 2**20
# Refused lines logged one by one per version of the file; the rest are counted in one line.
LOGGED_REFUSALS = 100


class MalformedRedirects(ValueError):
    """redirects.txt cannot be used as it is; the message names the line."""


@dataclass(frozen=True, slots=True)
class Redirect:
    base_uri: str
    include_path: bool

    def location(self, path: str) -> str:
        """Rule 11: the base URI, with ``/{path}`` appended when the entry asks for it."""
        return f"{self.base_uri}/{path}" if self.include_path else self.base_uri


@dataclass(frozen=True, slots=True)
class Refused:
    """A well-formed line whose target :func:`check_target` refused."""

    line: int
    project: str
    reason: str

    def __str__(self) -> str:
        return f"{REDIRECTS_KEY} line {self.line}: target for {self.project!r} {self.reason}"


@dataclass(frozen=True, slots=True)
class RedirectFile:
    """A parsed redirects.txt: the usable table, and the lines refused for their target."""

    table: dict[str, Redirect]
    refused: list[Refused] = field(default_factory=list)


def parse_redirects(data: bytes) -> RedirectFile:
    """The table in ``data``; MalformedRedirects for the first line that is not an entry."""
    table: dict[str, Redirect] = {}
    refused: list[Refused] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise MalformedRedirects(f"line {number}: not JSON ({exc})") from None
        if not (
            isinstance(item, dict)
            and isinstance(item.get("project_name"), str)
            and item["project_name"]
            and isinstance(item.get("base_uri"), str)
            and item["base_uri"]
            and isinstance(item.get("include_path"), bool)
        ):
            raise MalformedRedirects(
                f"line {number}: needs project_name, base_uri (strings) and include_path (bool)"
            )
        project = item["project_name"]
        try:
            check_target(item["base_uri"])
        except InvalidTarget as exc:
            refused.append(Refused(number, project, str(exc)))
            table.pop(project, None)  # a later bad line must not leave an earlier target live
            continue
        table[project] = Redirect(item["base_uri"], item["include_path"])
    return RedirectFile(table, refused)


def dump_redirects(table: dict[str, Redirect]) -> bytes:
    """The file form of ``table``, one line per project in name order."""
    return b"".join(
        orjson.dumps(
            {
                "project_name": name,
                "base_uri": table[name].base_uri,
                "include_path": table[name].include_path,
            }
        )
        + b"\n"
        for name in sorted(table)
    )


@dataclass(frozen=True, slots=True)
class Version:
    """What tells one stored redirects.txt from the next without reading it."""

    etag: str | None
    size: int
    last_modified: datetime


async def read_redirects_file(store: Store, max_bytes: int = MAX_BYTES) -> tuple[bytes, Version]:
    """The stored redirects.txt and its version; MalformedRedirects past ``max_bytes``.

    Read in chunks and counted, so a file that grew after the ``info`` is refused too.
    """
    info = await store.info(REDIRECTS_KEY)
    version = Version(info.etag, info.size, info.last_modified)
    too_big = MalformedRedirects(f"larger than {max_bytes} bytes")
    if info.size > max_bytes:
        raise too_big
    data = bytearray()
    async for chunk in await store.read(REDIRECTS_KEY):
        data += chunk
        if len(data) > max_bytes:
            raise too_big
    return bytes(data), version


class RedirectTable:
    """The table in service, refreshed from the store by :meth:`reload`."""

    def __init__(self, store: Store, metrics: ConveyorMetrics, max_bytes: int = MAX_BYTES) -> None:
        self.store = store
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.table: dict[str, Redirect] = {}
        self.version: Version | None = None
        self._failing: str | None = None  # the reason of the failure logged last, if it goes on

    def get(self, project: str) -> Redirect | None:
        return self.table.get(project)

    async def reload(self) -> None:
        """Pick up a changed redirects.txt; on any failure keep the current table."""
        try:
            info = await self.store.info(REDIRECTS_KEY)
            if Version(info.etag, info.size, info.last_modified) == self.version:
                if self._failing in ("missing", "unavailable"):  # back as it was
                    self._failing = None
                    self.metrics.redirect_current.set(1)
                    log.info("%s is back; %d redirects", REDIRECTS_KEY, len(self.table))
                return
            data, version = await read_redirects_file(self.store, self.max_bytes)
            # In a thread: 16 MB take about a second of CPU, which on the loop stalled every
            # request of the process (all services, in `pythonhosted serve`) for 2.5 s.
            parsed = await asyncio.to_thread(parse_redirects, data)
        except NotFound:
            self._failed("missing", "absent", logging.WARNING if self.table else logging.INFO)
            return
        except StorageError as exc:
            self._failed("unavailable", f"unreadable ({exc})", logging.WARNING)
            return
        except MalformedRedirects as exc:
            self.version = Version(info.etag, info.size, info.last_modified)  # not every check
            # checked once per version (above), so each malformed version is logged
            self._failing = None
            self._failed("malformed", f"malformed ({exc})", logging.ERROR)
            return
        for refused in parsed.refused[:LOGGED_REFUSALS]:
            log.error("%s; skipping that line", refused)
        if len(parsed.refused) > LOGGED_REFUSALS:
            more = len(parsed.refused) - LOGGED_REFUSALS
            log.error("%s: %d more lines refused for their target", REDIRECTS_KEY, more)
        self.table, self.version, self._failing = parsed.table, version, None
        self.metrics.redirect_reloads.inc()
        self.metrics.redirect_current.set(1)
        self.metrics.redirect_entries.set(len(parsed.table))
        self.metrics.redirect_refused.set(len(parsed.refused))
        log.info(
            "redirect table loaded: %d projects, %d lines refused",
            len(parsed.table),
            len(parsed.refused),
        )

    def _failed(self, reason: str, detail: str, level: int) -> None:
        """Count every failed reload, log a failure when it begins (or its reason changes).

        The check runs every ``redirects_reload_interval`` (2 s): a conveyor without a
        redirects.txt, or with its store down, logged the same line every 2 s for as long as
        that lasted (43,200 lines a day). The counter by reason and
        ``conveyor_redirect_table_current`` say that it goes on.
        """
        self.metrics.redirect_failures.labels(reason).inc()
        self.metrics.redirect_current.set(0)
        if reason != self._failing:
            self._failing = reason
            log.log(level, "%s is %s; keeping %d redirects", REDIRECTS_KEY, detail, len(self.table))

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Check for a new version every ``interval`` seconds until ``stop`` is set.

        One task per process does every check, so concurrent requests never add any.
        """
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                await self.reload()
