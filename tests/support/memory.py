"""A server process's resident memory, read from /proc, and waits for it to settle; slow
readers that make a server hold what it sends."""

from __future__ import annotations

import socket
from pathlib import Path

from pythonhosted.web.server import Bind
from support.processes import wait_until


def resident(pid: int) -> int:
    """The process's resident set size, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def peak(pid: int) -> int:
    """The process's high-water resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def settled(pid: int) -> int:
    """The resident size once it stops moving (two readings 0.5 s apart within 1 MB)."""
    readings = [resident(pid)]

    def still() -> int | None:
        readings.append(resident(pid))
        return readings[-1] if abs(readings[-1] - readings[-2]) < 2**20 else None

    return wait_until(still, timeout=30, interval=0.5)


def slow_readers(bind: Bind, path: str, count: int) -> list[socket.socket]:
    """``count`` connections that each asked for ``path``, read its head and stopped reading."""
    readers = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # a slow client's window
        sock.settimeout(30)
        sock.connect((bind.host, bind.port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        readers.append(sock)
    for sock in readers:
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return readers


def back_after(readers: list[socket.socket], pid: int, idle: int, factor: float) -> int:
    """Close ``readers``; the resident size once it is back within ``factor`` of ``idle``."""
    for sock in readers:
        sock.close()
    return wait_until(lambda: (now := resident(pid)) <= idle * factor and now)
