"""The quick-answer interface: a request an app answers inside the connection's protocol.

An app offers one by having a ``quick`` attribute (the service shell passes its handler's
on, :class:`pythonhosted.web.shell.Service`). The server calls it for every GET and HEAD
without a body that is first in line on its connection, before any ASGI work; ``None`` means
"not this one", and the request goes to the app over ASGI as usual. A quick answer is a
complete response but for the ``Date`` (and ``Connection: close``) header lines, which the
server adds; it is synchronous, so it must only read memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class QuickAnswer(NamedTuple):
    """``head``: the status line and header lines, each ending in CRLF, without the blank
    line; ``body``: what follows it (empty for HEAD); ``status``: for the counts."""

    head: bytes
    body: bytes
    status: int = 200


# (method, raw request target, headers by lowercased name, client (host, port) or None)
Quick = Callable[[str, bytes, dict[bytes, bytes], tuple[str, int] | None], QuickAnswer | None]
