"""A ``run_workers`` factory whose workers wait, while they build their app, until the test
opens a gate: a worker caught in its start-up on purpose (under load one takes seconds).

The gate is a directory named by ``GATE_DIR_ENV``: each worker touches ``building.PID`` on
arriving, builds once ``open`` exists there, and touches ``stopped.PID`` when its app's stop
hooks run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pythonhosted.web.lifespan import handle_lifespan
from pythonhosted.web.responses import send_text
from pythonhosted.web.types import ASGIApp, Receive, Scope, Send

GATE_DIR_ENV = "TEST_GATE_DIR"
GATE_WAIT_SECONDS = 60.0


def build() -> ASGIApp:
    gate = Path(os.environ[GATE_DIR_ENV])
    (gate / f"building.{os.getpid()}").touch()
    deadline = time.monotonic() + GATE_WAIT_SECONDS
    while not (gate / "open").exists() and time.monotonic() < deadline:
        time.sleep(0.02)

    async def started() -> None:
        pass

    async def stopped() -> None:
        (gate / f"stopped.{os.getpid()}").touch()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send, started, stopped)
            return
        await send_text(send, 200, "ok")

    return app
