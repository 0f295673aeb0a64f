"""Ports for servers started a moment later, and waiting until one listens (tests, benches).

A parallel test run starts hundreds of servers from several processes at once. A port is
free when it is chosen and taken only when the server binds it, seconds later under load; a
port chosen twice in that gap costs one of the two servers its start (``serve`` claims all
five of its addresses or none, so any one of them lost fails the whole command). Ports are
therefore drawn below the kernel's ephemeral range (which every outgoing connection draws
from), each process of a parallel run from its own slice of that range
(:func:`draw_from_slice`), and never twice in a row of :data:`REMEMBERED` draws.
"""

from __future__ import annotations

import functools
import os
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

from pythonhosted.web.listener import Bind

__all__ = ["REMEMBERED", "draw_from_slice", "free_port", "wait_for_port"]

CHOSEN_FROM = 10_000  # below this, ports that well-known services listen on are common
# A process's recent draws it will not hand out again: more than a test process starts
# servers in the minutes a draw can wait for its server to bind.
REMEMBERED = 2_048


class _Draws:
    """The slice this process draws from, and its recent draws (one lock: tests draw from
    worker threads too)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.slice = (0, 1)
        self.recent: dict[int, None] = {}  # in the order drawn

    def remember(self, port: int) -> None:
        self.recent[port] = None
        if len(self.recent) > REMEMBERED:
            del self.recent[next(iter(self.recent))]


_draws = _Draws()


def draw_from_slice(index: int, count: int) -> None:
    """Make this process draw its ports from slice ``index`` of ``count`` equal slices, so
    ``count`` processes started side by side (pytest-xdist's workers) never draw the same."""
    if not 0 <= index < count:
        raise ValueError(f"slice {index} of {count} does not exist")
    with _draws.lock:
        _draws.slice = (index, count)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to now, in this process's slice, not drawn recently.

    Not ``bind(0)``: the ports it hands out come from the ephemeral range, which every
    outgoing connection on the machine draws its local port from too, so in a busy test run
    one was taken before the server bound it (SeaweedFS, which takes eight, lost its start
    that way).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low, high = _slice_bounds()
    with _draws.lock:
        for _ in range(200):
            port = random.randrange(low, high)
            if port in _draws.recent:
                continue
            with socket.socket(family) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            _draws.remember(port)
            return port
    with socket.socket(family) as sock:  # the slice is full: the kernel's choice
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _slice_bounds() -> tuple[int, int]:
    index, count = _draws.slice
    span = (_ephemeral_start() - CHOSEN_FROM) // count
    low = CHOSEN_FROM + index * span
    return low, low + span


@functools.cache
def _ephemeral_start() -> int:
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        start = 32_768  # Linux's default
    return max(start, CHOSEN_FROM + 1_000)


def wait_for_port(
    bind: Bind, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Until something listens on ``bind``. With the ``process`` that should listen there, its
    exit fails the wait at once, saying how it ended and, when its stderr is a pipe, what it
    said last: a server that died at start used to leave only "nothing listening after 60 s"
    and its reason unread in the pipe."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((bind.host, bind.port), timeout=0.5):
                return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"the process that was to listen on {bind.url()} exited with "
                f"{process.returncode} first{_last_words(process)}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"nothing listening on {bind.url()} after {timeout}s{_last_words(process)}"
            )
        time.sleep(0.02)


def _last_words(process: subprocess.Popen[bytes] | None) -> str:
    """The end of ``process``'s stderr pipe, read without waiting (a worker it left may still
    hold the pipe open)."""
    if process is None or process.stderr is None:
        return ""
    fd = process.stderr.fileno()
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65_536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, True)
    said = b"".join(chunks)[-3_000:].decode(errors="replace").strip()
    return f"; its stderr ends:\n{said}" if said else "; its stderr is empty"
