"""One request answered over ASGI: its ``receive`` and ``send`` as the services expect them.

The semantics are granian's, which the services were tuned against:

- ``send`` returns an awaitable that is already done when the connection can take more, and
  a pending future when the client is behind (the transport's buffer is past its high-water
  mark): that is how :func:`pythonhosted.web.objects.send_file` tells a slow client;
- a send to a client that has left completes at once; the app learns of the departure from
  ``receive`` (``http.disconnect``), which it asks only while it cares
  (:mod:`pythonhosted.web.departure`);
- the head goes out with the first body message, in one write.

A response without ``Content-Length`` goes out chunked (HTTP/1.1) or delimited by the
connection's close (HTTP/1.0); one that ends short of its ``Content-Length``, or an app that
returns without ending its response, closes the connection, so the client sees the
truncation. Header values that hold CR, LF or NUL are refused (an error in the app, which
answers 500): a value relayed from elsewhere must not split the response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from http import HTTPStatus
from typing import TYPE_CHECKING

from pythonhosted.web.types import Message, Scope

if TYPE_CHECKING:
    from pythonhosted.web.h1.connection import Connection

log = logging.getLogger(__name__)

STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode())
    for status in HTTPStatus
}
NO_BODY_STATUSES = frozenset({204, 304})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ResponseError(RuntimeError):
    """The app sent what HTTP cannot carry (a second head, a header with CR/LF, a body after
    the end): its fault, answered 500 or the connection closed."""


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ResponseError(f"status {status} is not an HTTP status")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


class Cycle:
    """One request's exchange with the app; the :class:`Connection` feeds and writes it."""

    __slots__ = (
        "bodiless",
        "body",
        "body_done",
        "chunked",
        "conn",
        "continue_due",
        "end_handed",
        "finished",
        "head_request",
        "keep_alive",
        "quickly",
        "remaining",
        "scope",
        "start",
        "started",
        "waiter",
    )

    def __init__(
        self, conn: Connection, scope: Scope, keep_alive: bool, continue_due: bool
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.continue_due = continue_due  # "Expect: 100-continue": say so once the app reads
        self.head_request = scope["method"] == "HEAD"
        self.quickly = False  # a bodiless GET or HEAD that waited its turn: quick, maybe
        self.body: list[bytes] = []
        self.body_done = False  # the request's body has all arrived
        self.end_handed = False  # ... and went to the app
        self.start: Message | None = None  # the head, until the first body message
        self.started = False  # the head was written
        self.finished = False  # the response is complete
        self.chunked = False
        self.bodiless = False  # HEAD, 204, 304: whatever body the app sends is not written
        self.remaining: int | None = None  # body bytes the head's Content-Length still owes
        self.waiter: asyncio.Future[None] | None = None

    # -- the connection's side -------------------------------------------------------------

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the app's side --------------------------------------------------------------------

    async def receive(self) -> Message:
        conn = self.conn
        while not self.body and not self.body_done and not conn.gone and not self.finished:
            if self.continue_due:
                self.continue_due = False
                conn.transport.write(CONTINUE)
            await self._wait()
        if (self.body or self.body_done) and not self.end_handed:
            body = self.body
            data = body[0] if len(body) == 1 else b"".join(body)
            body.clear()
            conn.body_taken(len(data))
            self.end_handed = self.body_done
            return {"type": "http.request", "body": data, "more_body": not self.body_done}
        while not conn.gone and not self.finished:
            await self._wait()
        return {"type": "http.disconnect"}

    async def _wait(self) -> None:
        self.waiter = self.conn.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def send(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.body":
            if self.finished:
                raise ResponseError("a body message after the response ended")
            body: bytes = message.get("body", b"")
            more: bool = message.get("more_body", False)
            conn = self.conn
            if not self.started:
                self._write_head(body, more)
            elif body and not self.bodiless and conn.writing:
                self._write_body(body)
            if not more:
                self._end()
            return conn.writable()
        if kind == "http.response.start":
            if self.started or self.start is not None:
                raise ResponseError("a second response head")
            self.start = message
            return self.conn.ready
        raise ResponseError(f"ASGI message {kind!r} is not served here")

    def _write_head(self, body: bytes, more: bool) -> None:
        start = self.start
        if start is None:
            raise ResponseError("a body message before the response head")
        self.start = None
        status: int = start["status"]
        lines = [status_line(status)]
        length: int | None = None
        for name, value in start["headers"]:
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
                continue  # written below, once
            if lower == b"connection":
                if value.lower() == b"close":
                    self.keep_alive = False
                continue  # the connection's own (below)
            if lower == b"transfer-encoding":
                continue
            lines.append(name + b": " + value + b"\r\n")
        bodiless = self.bodiless = self.head_request or status in NO_BODY_STATUSES or status < 200
        if length is not None:
            if status not in NO_BODY_STATUSES:
                lines.append(b"content-length: %d\r\n" % length)
            self.remaining = 0 if bodiless else length
        elif not bodiless:
            if not more:
                lines.append(b"content-length: %d\r\n" % len(body))
                self.remaining = len(body)
            elif self.scope["http_version"] == "1.1":
                lines.append(b"transfer-encoding: chunked\r\n")
                self.chunked = True
            else:
                self.keep_alive = False  # the close ends the body
        conn = self.conn
        if conn.closing:
            self.keep_alive = False
        tail = conn.server.date_tail(self.keep_alive, self.scope["http_version"] == "1.0")
        lines.append(tail)
        head = b"".join(lines)
        # Every line but the tail's ends in the one CRLF put there: any other CR, LF (or a
        # NUL) came in a name or value. Three scans in C, not one per field.
        breaks = len(lines) - 1 + tail.count(b"\n")
        if head.count(b"\n") != breaks or head.count(b"\r") != breaks or b"\0" in head:
            raise ResponseError("a response header holds CR, LF or NUL")
        self.started = True
        if not conn.writing:
            return
        if bodiless or not body:
            conn.transport.write(head)
        else:
            self._write_body(body, head)

    def _write_body(self, body: bytes, head: bytes = b"") -> None:
        transport = self.conn.transport
        if self.chunked:
            transport.writelines((head, b"%x\r\n" % len(body), body, b"\r\n"))
            return
        remaining = self.remaining
        if remaining is not None:
            if len(body) > remaining:
                raise ResponseError("more body than the head's Content-Length")
            self.remaining = remaining - len(body)
        if head:
            if len(body) <= 4096:
                transport.write(head + body)
            else:
                transport.writelines((head, body))
        else:
            transport.write(body)

    def _end(self) -> None:
        self.finished = True
        conn = self.conn
        if self.chunked and conn.writing:
            conn.transport.write(b"0\r\n\r\n")
        if self.remaining:  # short of its Content-Length: only a close tells the client
            self.keep_alive = False
        self.wake()
        conn.response_done(self)

    # -- the app's end ---------------------------------------------------------------------

    def app_returned(self, task: asyncio.Future[None]) -> None:
        """The app's task ended: a response it left unfinished ends the connection (a 500
        first when nothing was sent yet)."""
        if self.finished:
            return
        error = None if task.cancelled() else task.exception()
        conn = self.conn
        if not self.started and conn.writing:
            if error is not None and type(error).__name__ != "CutShort":
                log.error(
                    "unhandled error for %s %r",
                    self.scope["method"],
                    self.scope["path"],
                    exc_info=error,
                )
            conn.transport.write(
                status_line(500)
                + b"content-type: text/plain; charset=UTF-8\r\ncontent-length: 15\r\n"
                + conn.server.date_tail(False)
                + b"Internal error\n"
            )
        self.finished = True
        self.keep_alive = False
        conn.response_done(self)
