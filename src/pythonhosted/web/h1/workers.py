"""``--workers N`` for an app that answers quickly: N processes of ours on the claimed socket.

granian's multi-process server runs its own server in its workers, so the quick answers
(:mod:`.quick`) need worker processes of ours. Each is a fresh interpreter
(``python -m pythonhosted.web.h1.worker``), not a fork: the main process has opened stores
(validating the settings) whose runtimes' threads a forked child would not have. A worker
inherits the listening socket, builds its app from the factory named, and serves it as a
single process does (:func:`pythonhosted.web.server.serve_until`: the drain, the stop
hooks).

This process only supervises. SIGINT, SIGTERM and SIGHUP stop the workers (each drains,
flushes and exits 0); one that has not exited ``drain_timeout`` + ``KILL_MARGIN`` seconds
later is killed. A worker that dies while the server runs is replaced, unless it died
within ``EARLY`` seconds of its start: a worker that cannot start (a store it cannot open)
would only fail again, so the server stops, with the worker's own error on stderr and exit 1.
The stop signals are held (blocked) while workers are spawned: a worker is born holding
them and lets them through once its loop can act on them, so a stop that comes while it
starts is not lost; this process waits for them with ``sigtimedwait``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from pythonhosted.web.listener import ServerLimits

log = logging.getLogger(__name__)

SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD}
KILL_MARGIN = 60  # seconds past the drain for a worker's stop hooks
EARLY = 10.0  # seconds: a worker that dies this soon after its start could not start
LIMITS_ENV = "_PYTHONHOSTED_WORKER_LIMITS"  # the server's limits, handed to each worker


class WorkersFailed(Exception):
    """A worker died as it started: the server stopped."""


def serve_processes(
    factory: str, listener: socket.socket, workers: int, limits: ServerLimits, stopped: bool
) -> None:
    """Run ``workers`` processes serving ``factory`` (``module:function``) on ``listener``
    until a stop signal; ``stopped``: one came already (before this could wait for it)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    env = {**os.environ, LIMITS_ENV: json.dumps(dataclasses.asdict(limits))}
    argv = [
        *(sys.executable, "-m", "pythonhosted.web.h1.worker"),
        *(factory, str(listener.fileno()), str(os.getpid())),
    ]
    running: dict[subprocess.Popen[bytes], float] = {}
    failed: str | None = None
    kill_at: float | None = None

    def spawn() -> None:
        process = subprocess.Popen(argv, env=env, pass_fds=(listener.fileno(),))
        running[process] = time.monotonic()

    def stop() -> None:
        nonlocal kill_at
        if kill_at is None:
            kill_at = time.monotonic() + limits.drain_timeout + KILL_MARGIN
            for process in running:
                process.send_signal(signal.SIGTERM)

    try:
        for _ in range(workers):
            spawn()
        if stopped:
            stop()
        while running:
            wait = 1.0 if kill_at is None else max(0.0, kill_at - time.monotonic())
            got = signal.sigtimedwait(SIGNALS, min(wait, 1.0))
            if got is not None and got.si_signo != signal.SIGCHLD:
                stop()
            for process, began in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[process]
                if kill_at is not None:
                    continue
                if time.monotonic() - began < EARLY:
                    failed = f"a worker exited with {code} as it started"
                    stop()
                else:
                    log.error("a worker exited with %s; starting another", code)
                    spawn()
            if kill_at is not None and time.monotonic() >= kill_at:
                for process in running:
                    process.kill()
                kill_at = time.monotonic() + 5  # reaped at the next turns
    finally:
        for process in running:
            process.kill()
            process.wait()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    if failed is not None:
        raise WorkersFailed(failed)
