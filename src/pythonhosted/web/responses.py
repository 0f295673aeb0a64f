"""Whole-body responses (errors, health, metrics, pages): one place that spells ASGI sends.

A body over :data:`PIECE` goes out in pieces of that size, the next only once the server has
written the last (:func:`wait_until_written`): the server copies each message it is given and
holds the copy until the client has read it, so a 24 MB index page sent as one message cost
every slow client 24 MB (40 stalled readers of one page: +890 MB). In 256 KB pieces sent back
to back, a slow reader still held what granian queues, ~1.5 MB (500 stalled readers of a 6 MB
root page: +760 MB); now ~90 KB (+45 MB), and a fast reader costs the same CPU (2.4-3.6 ms
for that page, against 2.3-3.4; 64 KB pieces took 5.4-6.0 ms for ~55 KB a reader).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST

from pythonhosted.web.metrics import ServiceRegistry
from pythonhosted.web.types import Headers, Send

TEXT = b"text/plain; charset=UTF-8"
PIECE = 256 * 1024
QUEUE_SLOTS = 4  # granian's queue per connection: messages it takes before a send must wait
EMPTY_BODY = {"type": "http.response.body", "body": b"", "more_body": True}


async def wait_until_written(send: Send) -> None:
    """Return once the server has written (nearly) all that was sent before.

    granian queues ``QUEUE_SLOTS`` messages per connection besides the one it is writing and
    one waiting to get in, and takes the first of these empty messages only once the message
    before it is written (but for its few KB of write buffer); they hold no bytes and it
    drops them unwritten, so the last one's send completes only once the earlier bytes are out.
    Our own server (:mod:`.h1`) writes each message at once and makes a send wait while its
    buffer is past 16 KB, so there the first of these waits until the client has taken all
    but a few KB.
    """
    for _ in range(QUEUE_SLOTS + 1):
        await send(EMPTY_BODY)


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
        if offset:
            await wait_until_written(send)
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
