"""The docs redirect table: ``redirects.txt`` at the root of the docs store (spec rule 14).

JSON lines, one ``{"project_name", "base_uri", "include_path"}`` object per line, blank lines
ignored. The service re-reads it every interval, re-parses only when its ETag changed, and a
missing, unreadable or malformed file keeps the table in service (logged and counted in
``conveyor_redirect_table_failures``), so an edit can never empty the table by mistake.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson

from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.storage import NotFound, StorageError, Store

log = logging.getLogger(__name__)

REDIRECTS_KEY = "redirects.txt"


class MalformedRedirects(ValueError):
    """A line of redirects.txt is not a valid entry; the message names the line."""


@dataclass(frozen=True, slots=True)
class Redirect:
    base_uri: str
    include_path: bool

    def location(self, path: str) -> str:
        """Rule 11: the base URI, with ``/{path}`` appended when the entry asks for it."""
        return f"{self.base_uri}/{path}" if self.include_path else self.base_uri


def parse_redirects(data: bytes) -> dict[str, Redirect]:
    """The table in ``data``; MalformedRedirects for the first bad line (nothing partial)."""
    table: dict[str, Redirect] = {}
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
        table[item["project_name"]] = Redirect(item["base_uri"], item["include_path"])
    return table


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


class RedirectTable:
    """The table in service, refreshed from the store by :meth:`reload`."""

    def __init__(self, store: Store, metrics: ConveyorMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self.table: dict[str, Redirect] = {}
        self.etag: str | None = None

    def get(self, project: str) -> Redirect | None:
        return self.table.get(project)

    async def reload(self) -> None:
        """Pick up a changed redirects.txt; on any failure keep the current table."""
        try:
            info = await self.store.info(REDIRECTS_KEY)
            if info.etag is not None and info.etag == self.etag:
                return
            table = parse_redirects(await self.store.get_bytes(REDIRECTS_KEY))
        except NotFound:
            self._failed("missing", "absent", logging.WARNING if self.table else logging.INFO)
            return
        except StorageError as exc:
            self._failed("unavailable", f"unreadable ({exc})", logging.WARNING)
            return
        except MalformedRedirects as exc:
            self.etag = info.etag  # do not re-parse the same bad version every interval
            self._failed("malformed", f"malformed ({exc})", logging.ERROR)
            return
        self.table, self.etag = table, info.etag
        self.metrics.redirect_reloads.inc()
        self.metrics.redirect_current.set(1)
        self.metrics.redirect_entries.set(len(table))
        log.info("redirect table loaded: %d projects", len(table))

    def _failed(self, reason: str, detail: str, level: int) -> None:
        self.metrics.redirect_failures.labels(reason).inc()
        self.metrics.redirect_current.set(0)
        log.log(level, "%s is %s; keeping %d redirects", REDIRECTS_KEY, detail, len(self.table))

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Reload every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                await self.reload()
