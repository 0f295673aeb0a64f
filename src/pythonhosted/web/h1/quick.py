"""The quick-answer interface: a request an app answers inside the connection's protocol.

An app offers one by having a ``quick`` attribute (the service shell passes its handler's
on, :class:`pythonhosted.web.shell.Service`). The server calls it for every GET and HEAD
without a body that is first in line on its connection, before any ASGI work; ``None`` means
"not this one", and the request goes to the app over ASGI as usual. A quick answer is a
complete response but for the ``Date`` (and ``Connection: close``) header lines, which the
server adds; it is synchronous, so it must only read memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple


class QuickAnswer(NamedTuple):
    """``head``: the status line and header lines, each ending in CRLF, without the blank
    line; ``body``: what follows it (empty for HEAD); ``status``: for the counts."""

    head: bytes
    body: bytes
    status: int = 200


# (method, raw request target, headers by lowercased name, client (host, port) or None)
Quick = Callable[[str, bytes, dict[bytes, bytes], tuple[str, int] | None], QuickAnswer | None]


def header_lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """``headers`` as the lines of a quick answer's head, each ending in CRLF; None when a
    name or value holds CR, LF or NUL (over ASGI the server answers such a header 500), which
    three scans in C tell, not one per field."""
    count = 0
    lines = []
    for name, value in headers:
        lines.append(name + b": " + value + b"\r\n")
        count += 1
    joined = b"".join(lines)
    if joined.count(b"\n") != count or joined.count(b"\r") != count or b"\0" in joined:
        return None
    return joined
