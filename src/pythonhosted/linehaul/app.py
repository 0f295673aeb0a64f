"""Linehaul as a service: the ingest and publish jobs in the background of an ASGI app that
answers ``/_health`` and ``/metrics``.

The jobs start with the app's lifespan and stop with it: a stop lets ingest finish the
log object under way and publish the group of files under way, then ends their passes, so
the stop is quick and leaves nothing for a lease timeout to recover.

``/_health`` is 200 ``OK`` while every job's latest pass finished, and 503 with the failed
pass's reason otherwise (a status for operators and load balancers: the jobs keep retrying
by themselves).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from pythonhosted.config import Settings
from pythonhosted.linehaul.ingest import run_ingest
from pythonhosted.linehaul.monitor import JOBS, Job, Monitor
from pythonhosted.linehaul.publish import run_publish
from pythonhosted.web.lifespan import handle_lifespan
from pythonhosted.web.responses import send_metrics, send_text
from pythonhosted.web.security import SECURITY
from pythonhosted.web.types import Receive, Scope, Send

HEALTH = frozenset({"/_health", "/_health/"})


RUNNERS: dict[Job, Callable[[Settings, asyncio.Event, Monitor], Coroutine[Any, Any, None]]] = {
    "ingest": run_ingest,
    "publish": run_publish,
}


class LinehaulApp:
    """``jobs``: both (``linehaul serve``, ``serve``) or one (a scaled-out worker)."""

    def __init__(self, settings: Settings, jobs: Sequence[Job] = JOBS) -> None:
        self.settings = settings
        self.jobs = tuple(jobs)
        self.monitor = Monitor(self.jobs)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def startup(self) -> None:
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(RUNNERS[job](self.settings, self._stop, self.monitor), name=job)
            for job in self.jobs
        ]

    async def shutdown(self) -> None:
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send, self.startup, self.shutdown)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        head = scope["method"] == "HEAD"
        if scope["method"] not in ("GET", "HEAD"):
            await send_text(
                send, 405, "Method not allowed", headers=[*SECURITY, (b"allow", b"GET, HEAD")]
            )
        elif path in HEALTH:
            problems = self.monitor.problems()
            status = 503 if problems else 200
            await send_text(send, status, "\n".join(problems) or "OK", headers=SECURITY, head=head)
        elif path == "/metrics":
            await send_metrics(send, self.monitor.registry, SECURITY)
        else:
            await send_text(
                send,
                404,
                "Not found: linehaul answers /_health and /metrics",
                headers=SECURITY,
                head=head,
            )
