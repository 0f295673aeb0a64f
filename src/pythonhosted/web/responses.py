"""Whole-body responses (errors, health, metrics, pages): one place that spells ASGI sends.

A body over :data:`PIECE` goes out in pieces of that size: the server copies each message it
is given and holds the copy until the client has read it, so a 24 MB index page sent as one
message cost every slow client 24 MB (40 stalled readers of one page: +890 MB); in pieces a
connection holds the few the server queues.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST

from pythonhosted.web.metrics import ServiceRegistry
from pythonhosted.web.types import Headers, Send

TEXT = b"text/plain; charset=UTF-8"
PIECE = 256 * 1024


async def send_response(
    send: Send,
    status: int,
    body: bytes = b"",
    *,
    content_type: bytes | None = TEXT,
    headers: Iterable[tuple[bytes, bytes]] = (),
    head: bool = False,
) -> None:
    """Send a complete response; for HEAD the headers describe ``body`` but it is not sent."""
    out: Headers = list(headers)
    if content_type is not None and body:
        out.append((b"content-type", content_type))
    if status not in (204, 304):
        out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    if head or len(body) <= PIECE:
        await send({"type": "http.response.body", "body": b"" if head else body})
        return
    for offset in range(0, len(body), PIECE):
        await send(
            {"type": "http.response.body", "body": body[offset : offset + PIECE], "more_body": True}
        )
    await send({"type": "http.response.body", "body": b""})


async def send_text(
    send: Send,
    status: int,
    text: str,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    head: bool = False,
) -> None:
    """A short plain-text reason, newline-terminated so curl output stays readable."""
    await send_response(send, status, (text + "\n").encode(), headers=headers, head=head)


async def send_metrics(
    send: Send, registry: ServiceRegistry, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Prometheus text exposition of one service's registry (summed over its workers)."""
    await send_response(
        send,
        200,
        registry.exposition(),
        content_type=CONTENT_TYPE_LATEST.encode(),
        headers=headers,
    )
