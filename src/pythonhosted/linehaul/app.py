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
from pythonhosted.web.request import Request
from pythonhosted.web.shell import Service
from pythonhosted.web.types import Receive, Send

RUNNERS: dict[Job, Callable[[Settings, asyncio.Event, Monitor], Coroutine[Any, Any, None]]] = {
    "ingest": run_ingest,
    "publish": run_publish,
}


class LinehaulApp(Service):
    """``jobs``: both (``linehaul serve``, ``serve``) or one (a scaled-out worker)."""

    def __init__(self, settings: Settings, jobs: Sequence[Job] = JOBS) -> None:
        self.settings = settings
        self.jobs = tuple(jobs)
        self.monitor = Monitor(self.jobs)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        super().__init__(
            "linehaul",
            self._not_found,
            self.monitor.registry,
            methods=("GET", "HEAD"),
            health=self.monitor.problems,
            health_aliases=("/_health/",),
            hooks=[(self.startup, self.shutdown)],
            access_log=settings.http.access_log,
        )

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

    async def _not_found(self, request: Request, receive: Receive, send: Send) -> None:
        await self.text(send, request, 404, "Not found: linehaul answers /_health and /metrics")
