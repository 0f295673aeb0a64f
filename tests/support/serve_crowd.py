"""``serve``'s files edge, index and stats web on one event loop, over the stats tests'
small warehouse, and a crowd of cold stats questions waiting for a warehouse writer: what
must not hold up the other services (tests/test_serve.py, bench/isolation.py)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pythonhosted.config import FilesSettings
from pythonhosted.files.service import build_edge
from pythonhosted.index.service import build_app as build_index
from pythonhosted.stats_web.app import StatsWebApp
from pythonhosted.stats_web.service import build_app as build_stats_web
from pythonhosted.warehouse.access import intent_file
from pythonhosted.web.router import PrefixRouter
from pythonhosted.web.server import Bind
from pythonhosted.web.types import ASGIApp
from support.locks import lock_holder
from support.processes import wait_until
from support.stats_warehouse import build, event_lines


@dataclass
class Wired:
    app: ASGIApp  # the stats web under /api, the index under /simple, the edge for the rest
    stats: StatsWebApp
    files: Path  # the primary store's directory (the uploaded wheels)
    intent: Path  # the warehouse writer's intent file


def wired(tmp: Path, max_pending: int, read_wait: float) -> Wired:
    """The apps as ``serve`` builds them (their own factories), in one app, so one loop."""
    warehouse = build(tmp, event_lines(), max_pending=max_pending, read_wait=read_wait)
    primary = f"file://{tmp}/files"
    settings = warehouse.settings.model_copy(update={"files": FilesSettings(primary=primary)})
    stats = build_stats_web(settings)
    front = PrefixRouter(
        [("/simple", build_index(settings)), ("/api", stats)], build_edge(settings)
    )
    return Wired(front, stats, tmp / "files", intent_file(warehouse.path))


@contextlib.contextmanager
def waiting_crowd(base: str, wired: Wired, count: int) -> Iterator[None]:
    """For the block: ``count`` distinct cold stats questions (at most the stats web's
    ``max_pending``) in flight, waiting for a writer in another process to let go."""
    bind = Bind.parse(base.removeprefix("http://"))
    holder = lock_holder(wired.intent, write_pid=True)
    crowd = [socket.create_connection((bind.host, bind.port), 10) for _ in range(count)]
    try:
        for n, sock in enumerate(crowd):
            sock.sendall(f"GET /api/packages/p-{n}/recent HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(lambda: len(wired.stats.admission) == count)
        yield
    finally:
        wired.intent.unlink()
        holder.kill()
        holder.wait()
        for sock in crowd:
            sock.close()
