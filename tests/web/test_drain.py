"""Stops in ``--workers`` mode that reach a worker while it starts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pythonhosted.web.drain import Draining, Stopping, stop_began, unless_stopping
from pythonhosted.web.server import free_port
from support.gated_app import GATE_DIR_ENV
from support.processes import holds, started, wait_until

SUPPORT = Path(__file__).parent.parent / "support"
WORKERS = 2
SERVE_GATED = (
    "import sys\n"
    "from pythonhosted.web.server import Bind, ServerLimits, run_workers\n"
    f"run_workers('gated_app:build', Bind('127.0.0.1', int(sys.argv[1])), {WORKERS},"
    " ServerLimits(drain_timeout=1))\n"
)


def test_a_stop_while_the_workers_start_ends_once_they_have_started(tmp_path: Path) -> None:
    """SIGTERM while every worker is still building its app: each keeps the stop until it
    can act on it, then stops (its stop hooks run) and the server exits 0.

    Before, a starting worker ran the handler it inherited from the main process, which
    dropped the stop: the worker went on to serve, and the stop waited for granian's kill
    timeout (``http.drain_timeout`` + 60 s), the address held, the stop hooks never run."""
    env = {**os.environ, "PYTHONPATH": str(SUPPORT), GATE_DIR_ENV: str(tmp_path)}
    command = [sys.executable, "-c", SERVE_GATED, str(free_port())]
    with started(command, env=env, stderr=subprocess.PIPE) as process:
        workers = wait_until(lambda: _all_pids(tmp_path, "building"))
        process.send_signal(signal.SIGTERM)
        # The main process passes the stop on to each worker, still building: kept, not lost.
        wait_until(lambda: all(holds(pid, signal.SIGTERM) for pid in workers), timeout=20)
        (tmp_path / "open").touch()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert b"Traceback" not in stderr
    assert _all_pids(tmp_path, "stopped") == workers


def _all_pids(gate: Path, state: str) -> set[int] | None:
    """The workers' process ids once every one of them is in ``state``."""
    pids = {int(path.suffix[1:]) for path in gate.glob(f"{state}.*")}
    return pids if len(pids) == WORKERS else None


def test_a_wait_ends_when_the_stop_begins_and_work_with_nothing_to_wait_for_still_answers() -> None:
    """unless_stopping: a long wait ends with Stopping (its work cancelled) when the stop
    begins; during a stop, work that ends in its first steps still gives its result."""

    async def quick() -> str:
        return "answered"

    async def scenario() -> list[str]:
        seen = []
        long = asyncio.ensure_future(asyncio.sleep(60, "slept"))
        waiting = asyncio.ensure_future(unless_stopping(long))
        await asyncio.sleep(0)
        stop_began().set()
        with pytest.raises(Stopping):
            await waiting
        seen.append(f"long cancelled: {long.cancelled()}")
        seen.append(await unless_stopping(quick()))
        with pytest.raises(Stopping):
            await unless_stopping(asyncio.sleep(60))
        return seen

    assert asyncio.run(scenario()) == ["long cancelled: True", "answered"]


def test_an_app_run_on_a_second_loop_still_counts_its_requests() -> None:
    """The drain counts the requests in flight on the loop it serves; an app object run
    again on another loop (tests, an embedded server started twice) counts them there too."""
    seen: list[bool] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(asyncio.current_task() in draining.requests)

    draining = Draining(app)
    scope = {"type": "http", "path": "/"}
    for _ in range(2):
        asyncio.run(draining(scope, None, None))  # type: ignore[arg-type]
    assert seen == [True, True]
