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


def exchange_raw(base_url: str, method: str, path: str, headers: dict[str, str]) -> bytes:
    """One request on a connection of its own (``Connection: close``) and the whole response
    as the server sent it, head and body: what an HTTP client would normalise away."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{fields}Connection: close\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data
