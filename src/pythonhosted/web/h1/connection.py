"""One client connection: requests parsed by httptools (llhttp), answered in order.

The hot path is :meth:`Connection.on_message_complete` for a GET or HEAD the app answers
quickly (:mod:`.quick`): one dict of headers, one call, one ``writelines``. Everything else
becomes a :class:`~.cycle.Cycle` run as a task (a task so a stop can cut it:
:mod:`pythonhosted.web.drain`).

Limits, as granian kept them before:

- the head deadline (``http.header_timeout``) runs from accept, and again from the end of
  each response on a kept-alive connection, until the next head is complete; a connection
  still without one then is closed. One timer per connection, re-armed only when it fires
  (a timer per request cost more than the rest of a quick answer's bookkeeping);
- a head (request line and header lines) over ``MAX_HEAD`` bytes, or with more than
  ``MAX_HEADERS`` fields, is answered 431 and the connection closed: httptools buffers a
  header until it is complete, so the bound is checked on every read, not only per field;
- pipelined requests wait their turn, and while one waits the connection stops reading;
  what one read holds is parsed in ``PIPELINE_SLICE`` pieces once requests queue, so a client
  that pipelines thousands of tiny requests in one packet queues a few hundred at most;
- a request body is read only as the app takes it (``BODY_BUFFER`` at most ahead of it);
- the transport's write buffer past ``WRITE_HIGH`` makes ``send`` wait (:mod:`.cycle`), and
  a quick answer queued behind a client that is not reading waits as any request does.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import httptools

from pythonhosted.web.h1.cycle import Cycle, status_line
from pythonhosted.web.h1.quick import Quick, QuickAnswer

if TYPE_CHECKING:
    from pythonhosted.web.h1.server import H1Server

MAX_HEAD = 8 * 1024  # what granian's read buffer allowed (bench/rehearsal.py's hostile heads)
MAX_HEADERS = 100  # hyper's bound
PIPELINE_SLICE = 4 * 1024
BODY_BUFFER = 64 * 1024
WRITE_HIGH = 16 * 1024
QUICK_METHODS = frozenset({b"GET", b"HEAD"})
# A method as HTTP allows it (RFC 9110 5.6.2's token), then the space before the target.
_METHOD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1," + str(MAX_HEAD).encode() + rb"}) ")
BODY_FIELDS = frozenset({b"content-length", b"transfer-encoding"})  # a request with a body


class _HeadTooLarge(Exception):
    pass


class Connection(asyncio.Protocol):
    __slots__ = (
        "backlog",
        "begun",
        "body_buffered",
        "client",
        "closing",
        "current",
        "drained",
        "framed",
        "gone",
        "head_fed",
        "head_since",
        "head_size",
        "headers",
        "http10",
        "in_head",
        "keep_alive",
        "loop",
        "maybe_quick",
        "parser",
        "queue",
        "read_paused",
        "ready",
        "receiving",
        "server",
        "server_address",
        "timer",
        "transport",
        "unknown_method",
        "url",
        "write_paused",
        "writing",
    )

    def __init__(self, server: H1Server) -> None:
        self.server = server
        self.loop = server.loop
        self.ready: asyncio.Future[None] = server.ready
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.client: tuple[str, int] | None = None
        self.server_address: tuple[str, int] | None = None
        self.gone = False  # the connection is closed (by either side)
        self.writing = True  # writes still reach the transport
        self.closing = False  # the server stops: no request after the current one
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.head_fed = 0
        self.in_head = True
        self.begun = False  # a head has begun to arrive and is not complete
        self.head_since: float | None = None
        self.keep_alive = True
        self.http10 = False  # the request being parsed is HTTP/1.0
        self.maybe_quick = False
        self.framed = False  # the request being parsed names a body (its length or coding)
        self.unknown_method = b""  # the real method of a request parsed with one llhttp knows
        self.current: Cycle | None = None  # being answered
        self.receiving: Cycle | None = None  # taking the body being read
        self.queue: deque[Cycle] = deque()  # pipelined, waiting their turn
        self.backlog = b""  # read, not parsed yet (while requests queue)
        self.body_buffered = 0
        self.read_paused = False
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -- transport events ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        own = transport.get_extra_info("sockname")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        self.server_address = (own[0], own[1]) if isinstance(own, tuple) else None
        transport.set_write_buffer_limits(WRITE_HIGH)  # type: ignore[attr-defined]
        self.head_since = self.loop.time()
        self.timer = self.loop.call_later(self.server.header_timeout, self._deadline)
        self.server.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.writing = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for cycle in (self.current, *self.queue):
            if cycle is not None:
                cycle.wake()
        self.queue.clear()
        self._drained()
        self.server.closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._drained()

    def _drained(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def writable(self) -> asyncio.Future[None]:
        """Done while the client keeps up (or has gone); pending while it is behind."""
        if not self.write_paused or self.gone:
            return self.ready
        if self.drained is None:
            self.drained = self.loop.create_future()
        return self.drained

    def data_received(self, data: bytes) -> None:
        if self.backlog or self.queue or (self.current is not None and len(data) > PIPELINE_SLICE):
            self.backlog += data
            self._parse_backlog()
        else:
            self._feed(data)

    def _parse_backlog(self) -> None:
        """Parse what was read a slice at a time while few requests wait; stop reading while
        any do."""
        while self.backlog and len(self.queue) < 2 and not self.gone:
            piece, self.backlog = self.backlog[:PIPELINE_SLICE], self.backlog[PIPELINE_SLICE:]
            self._feed(piece)
        self._pause_reading_if(bool(self.backlog or self.queue) or self.body_buffered > BODY_BUFFER)

    def _feed(self, data: bytes) -> None:
        if self.in_head:
            self.head_fed += len(data)
        try:
            self.parser.feed_data(data)
        except _HeadTooLarge:
            self._refuse(431, b"Request header fields too large\n")
            return
        except httptools.HttpParserUpgrade:
            self.keep_alive = False  # no protocol but HTTP/1.1 here: the answer, then close
            self._pause_reading_if(True)
            return
        except httptools.HttpParserInvalidMethodError:
            if not self._parse_unknown_method(data):
                self._refuse(501, b"Method not implemented\n")
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(431, b"Request header fields too large\n")
            else:
                self._refuse(400, b"Bad request\n")
            return
        if self.in_head and self.head_fed > MAX_HEAD:
            self._refuse(431, b"Request header fields too large\n")

    def _parse_unknown_method(self, data: bytes) -> bool:
        """A request whose method llhttp does not know (``BREW``, ``get``) goes to the app,
        which answers as the service does any method it does not take (the spec's 405 with
        ``Allow``, as on granian): parsed again by a new parser with a method it knows in its
        place, the app given the real one. Only when ``data`` begins that request on a
        connection with none in progress (on_message_begin, which sets ``head_fed`` to 0,
        ran in this feed) and holds its whole method: else nothing says where it began, and
        it is 501 (clients write a request line in one piece; a fuzzer's pieces get 501)."""
        if self.head_fed or self.current is not None or self.queue:
            return False
        found = _METHOD.match(data)
        if found is None or _llhttp_knows(found[1]):
            return False  # the request llhttp refused starts further on
        self.unknown_method = found[1]
        self.parser = httptools.HttpRequestParser(self)
        self._feed(b"GET" + data[len(found[1]) :])
        return True

    def _refuse(self, status: int, reason: bytes) -> None:
        """Answer a request that cannot be parsed and close; a request being answered first
        finishes (its answer is already on its way) unless nothing could follow it."""
        self.backlog = b""
        self.queue.clear()
        self._pause_reading_if(True)
        if self.current is not None:
            self.current.keep_alive = False
            return
        if self.writing:
            self.transport.write(
                status_line(status)
                + b"content-type: text/plain; charset=UTF-8\r\ncontent-length: %d\r\n" % len(reason)
                + self.server.date_tail(False)
                + reason
            )
        self._close()

    def _close(self) -> None:
        self.writing = False
        self.transport.close()

    def _pause_reading_if(self, pause: bool) -> None:
        if pause != self.read_paused and not self.gone:
            self.read_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def _deadline(self) -> None:
        """The timer: close a connection whose head is overdue, else look again when the
        current wait for a head would be."""
        since = self.head_since
        now = self.loop.time()
        timeout = self.server.header_timeout
        if since is not None and now - since >= timeout:
            self.timer = None
            self._close()
            return
        self.timer = self.loop.call_at(
            (since if since is not None else now) + timeout, self._deadline
        )

    # -- parser callbacks (names fixed by httptools) ----------------------------------------

    def on_message_begin(self) -> None:
        self.in_head = True
        self.begun = True
        self.head_fed = 0
        self.head_size = 0
        self.url = b""
        self.headers = []
        self.framed = False
        if self.head_since is None:
            self.head_since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.head_size += len(url)
        if self.head_size > MAX_HEAD:
            raise _HeadTooLarge
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        headers = self.headers
        if self.head_size > MAX_HEAD or len(headers) >= MAX_HEADERS:
            raise _HeadTooLarge
        lower = name.lower()
        if lower in BODY_FIELDS:
            self.framed = True
        headers.append((lower, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.begun = False
        self.head_since = None
        parser = self.parser
        self.keep_alive = parser.should_keep_alive() and not self.closing
        self.http10 = parser.get_http_version() == "1.0"
        method = parser.get_method()
        if self.unknown_method:
            method, self.unknown_method = self.unknown_method, b""
        self.maybe_quick = method in QUICK_METHODS and not self.framed
        if not self.maybe_quick:
            self._arrived(self._cycle(method))

    def on_body(self, body: bytes) -> None:
        cycle = self.receiving
        if cycle is None:
            return
        cycle.body.append(body)
        self.body_buffered += len(body)
        if self.body_buffered > BODY_BUFFER:
            self._pause_reading_if(True)
        cycle.wake()

    def on_message_complete(self) -> None:
        if self.maybe_quick:
            self.maybe_quick = False
            if self.current is None and not self.queue and not self.write_paused:
                quick = self.server.quick
                if quick is not None and self._answer_quickly(quick):
                    return
            bodiless = self._cycle(self.parser.get_method())
            bodiless.body_done = True
            bodiless.quickly = True
            self._arrived(bodiless)
            return
        cycle = self.receiving
        if cycle is not None:
            cycle.body_done = True
            cycle.wake()

    # -- answering -------------------------------------------------------------------------

    def _answer_quickly(self, quick: Quick) -> bool:
        """The request just parsed, answered inside the connection if the app can."""
        raw = self.url
        target = raw.split(b"?", 1)[0] if b"?" in raw else raw
        method = "GET" if self.parser.get_method() == b"GET" else "HEAD"
        answer = quick(method, target, dict(self.headers), self.client)
        if answer is None:
            return False
        self._write_quick(answer, self.keep_alive, self.http10)
        if self.keep_alive:
            self.head_since = self.loop.time()
        else:
            self._close()
        return True

    def _answer_waiting_quickly(self, cycle: Cycle, quick: Quick) -> bool:
        """A pipelined GET or HEAD whose turn came, answered inside the connection if the app
        can (``response_done`` goes on to the next)."""
        scope = cycle.scope
        answer = quick(scope["method"], scope["raw_path"], dict(scope["headers"]), self.client)
        if answer is None:
            return False
        cycle.keep_alive = cycle.keep_alive and not self.closing
        self._write_quick(answer, cycle.keep_alive, scope["http_version"] == "1.0")
        cycle.finished = True
        return True

    def _write_quick(self, answer: QuickAnswer, keep_alive: bool, http10: bool) -> None:
        """One ``writev``: the app's head, the server's last lines, the body."""
        tail = self.server.date_tail(keep_alive, http10)
        self.transport.writelines((answer.head, tail, answer.body))

    def _cycle(self, method: bytes) -> Cycle:
        raw = self.url
        path_bytes, _, query = raw.partition(b"?")
        if b"#" in path_bytes:
            path_bytes = path_bytes.split(b"#", 1)[0]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.0" if self.http10 else "1.1",
            "method": method.decode("latin-1"),
            "scheme": "http",
            "path": _decoded(path_bytes),
            "raw_path": path_bytes,
            "query_string": query,
            "root_path": "",
            "headers": self.headers,
            "client": self.client,
            "server": self.server_address,
        }
        expect = any(n == b"expect" and v.lower() == b"100-continue" for n, v in self.headers)
        cycle = Cycle(self, scope, self.keep_alive, expect)
        self.receiving = cycle
        self.body_buffered = 0
        return cycle

    def _arrived(self, cycle: Cycle) -> None:
        if self.current is None:
            if not self._start(cycle):
                self._next(cycle)
        else:
            self.queue.append(cycle)
            self._pause_reading_if(True)

    def _start(self, cycle: Cycle) -> bool:
        """Begin answering ``cycle``: True when the app now has it, False when it was answered
        quickly (a pipelined GET or HEAD whose turn came) and is done."""
        quick = self.server.quick
        if (
            cycle.quickly
            and quick is not None
            and not self.write_paused
            and self._answer_waiting_quickly(cycle, quick)
        ):
            return False
        self.current = cycle
        # a task (not the app stepped inline): the drain cuts a request by cancelling it
        task = asyncio.ensure_future(
            self.server.app(cycle.scope, cycle.receive, cycle.send), loop=self.loop
        )
        task.add_done_callback(cycle.app_returned)
        self.server.answering(task)
        return True

    # -- the cycle's side ------------------------------------------------------------------

    def body_taken(self, size: int) -> None:
        self.body_buffered = max(0, self.body_buffered - size)
        if self.body_buffered <= BODY_BUFFER and not self.queue and not self.backlog:
            self._pause_reading_if(False)

    def response_done(self, cycle: Cycle) -> None:
        """``cycle``'s response is complete: the next request's turn, or the close."""
        if cycle is not self.current:
            return
        self.current = None
        self._next(cycle)

    def _next(self, finished: Cycle) -> None:
        """After ``finished``: close, or start the requests waiting (a loop, not recursion:
        thousands of pipelined requests may be answered quickly one after the other), or
        wait for the next head."""
        while True:
            if self.gone:
                return
            if not finished.keep_alive or not finished.body_done or self.closing:
                self._close()  # an unread body cannot be skipped to find the next request
                return
            if not self.queue:
                break
            waiting = self.queue.popleft()
            if self._start(waiting):
                return
            finished = waiting
        self.head_since = self.loop.time()
        if self.backlog:
            self._parse_backlog()
        else:
            self._pause_reading_if(False)

    @property
    def idle(self) -> bool:
        """Waiting for a request of which nothing has come (kept alive after a response, or
        silent since it connected), with no answer still leaving: what the server may close
        to make room at its bound."""
        return (
            self.head_since is not None
            and not self.begun
            and self.current is None
            and not self.queue
            and not self.backlog
            and self.writing
            and not self.write_paused
        )

    def idle_since(self) -> float:
        return self.head_since if self.head_since is not None else self.loop.time()

    def close_idle(self) -> None:
        """Closed by the server for a waiting client (:attr:`idle` only)."""
        self._close()

    def stop(self) -> None:
        """The server stops: close now when idle, else after the response in progress."""
        self.closing = True
        if self.current is None and not self.gone:
            self._close()


def _llhttp_knows(method: bytes) -> bool:
    """Whether llhttp parses ``method`` (its methods are fixed when it is built)."""
    probe = httptools.HttpRequestParser(_Ignored())
    try:
        probe.feed_data(method + b" / HTTP/1.1\r\n")
    except httptools.HttpParserError:
        return False
    return True


class _Ignored:
    """A parser's callbacks for probing: none."""


def _decoded(raw: bytes) -> str:
    """The path as ASGI gives it: percent-decoded, as UTF-8, a byte that is not UTF-8 as
    U+FFFD, as granian and other ASGI servers give it (escaped as a surrogate, it was a path
    no app could encode: the stats web's 404 page answered 500). ``raw_path`` keeps the
    bytes for the apps that decide on them."""
    if b"%" not in raw:
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            return raw.decode("utf-8", "replace")
    return unquote_to_bytes(raw).decode("utf-8", "replace")
