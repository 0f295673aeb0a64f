"""Client connections that hold a server's descriptors without sending anything."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from pythonhosted.web.server import Bind


@contextlib.contextmanager
def idle_sockets(bind: Bind, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections to ``bind`` that never send a byte."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((bind.host, bind.port))
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()
