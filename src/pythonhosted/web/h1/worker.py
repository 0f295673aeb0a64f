"""One worker process of :mod:`.workers`:
``python -m pythonhosted.web.h1.worker FACTORY FD SUPERVISOR_PID``.

Born with the stop signals held (the supervisor spawns it so); its loop's handlers are in
place before it lets them through, so a stop that came while it started stops it now. It
also stops when the supervisor dies (``PR_SET_PDEATHSIG``): a worker never serves on alone.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import importlib
import json
import os
import signal
import socket
import sys

import uvloop

from pythonhosted.web.h1.workers import LIMITS_ENV, SIGNALS
from pythonhosted.web.listener import ServerLimits

PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """SIGTERM when the supervisor dies (Linux); at once if it is already gone."""
    name = ctypes.util.find_library("c")
    if name is not None:
        ctypes.CDLL(name, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)  # held: delivered once the loop can act on it


def main(factory: str, descriptor: int, supervisor: int) -> None:
    from pythonhosted.web.server import serve_until  # the server imports this package

    _die_with(supervisor)
    module, _, name = factory.partition(":")
    app = getattr(importlib.import_module(module), name)()
    limits = ServerLimits(**json.loads(os.environ[LIMITS_ENV]))
    listener = socket.socket(fileno=descriptor)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, stop.set)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        await serve_until([(app, listener)], stop, limits)

    uvloop.run(serve())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
