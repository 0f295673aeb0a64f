"""The server: accepts connections up to the bound, runs the app's lifespan, stops by draining.

Connections are accepted one at a time by this loop (``sock_accept``) rather than by the
event loop's own server, because that one cannot pause: past ``max_connections`` a new
client must wait in the listen backlog, and with an unpausable server it would be accepted
and held instead. While it waits, the connections idle longest (waiting for a request of
which nothing has come: kept alive after a response, or silent since they connected) are
closed to make room for it, an eighth of them at a time (at least one, at most
``RECLAIM_BATCH``), as nginx reuses its idle connections when it runs out: a crowd of
silent clients at the bound otherwise kept every new client (a health probe among them)
waiting for the head deadline. A connection with a request in progress, or part of a head,
is never closed for room; when every one is busy, the new client waits for a close. A
failing ``accept`` (out of descriptors) is retried after a short wait, logged once a
minute, never the end of the server.

The stop is the embedded granian server's, as :func:`pythonhosted.web.server.serve_until`
drives both: :meth:`H1Server.stop` stops accepting, closes idle connections and lets each
busy one close after its response; :meth:`H1Server.serve` returns once every connection is
closed and the app's stop hooks have run (requests past the drain deadline are cut by
:mod:`pythonhosted.web.drain`, which closes their connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import logging
import socket
import time
from collections import deque
from email.utils import formatdate

from pythonhosted.boundedlog import BoundedLog
from pythonhosted.web.h1.connection import Connection
from pythonhosted.web.h1.quick import Quick
from pythonhosted.web.lifespan import Child
from pythonhosted.web.listener import ServerLimits
from pythonhosted.web.relief import Relief
from pythonhosted.web.types import ASGIApp

log = logging.getLogger(__name__)

# Open connections that make a crowd, whose leaving gives memory back (:mod:`..relief`): the
# write buffers and pieces of 1,000 slow downloads, freed, left the C heap 85 MB larger.
CROWD = 256
# accept() failures that pass: a full descriptor table or memory; wait and try again.
_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_RETRY = 0.1
# At the bound, idle connections closed at a time for clients waiting in the backlog
# (nginx's ngx_drain_connections: 32 at most), the oldest kept from one look at every
# connection for the waits after it, and how often a full server with none idle looks again
# for some while clients wait.
RECLAIM_BATCH = 32
RECLAIM_CANDIDATES = 1024
RECLAIM_RECHECK = 1.0


class StartupFailed(Exception):
    """The app's start hooks failed: the server does not serve."""


class H1Server:
    def __init__(
        self, app: ASGIApp, listener: socket.socket, limits: ServerLimits, quick: Quick | None
    ) -> None:
        self.app = app
        self.quick = quick
        self.listener = listener
        self.header_timeout = limits.header_timeout
        self.max_connections = limits.max_connections
        self.connections: set[Connection] = set()
        # Requests the app is answering: a client that left does not end its request's task,
        # and the stop waits for those too (the drain cuts them at its deadline).
        self.requests: set[asyncio.Future[None]] = set()
        self.relief = Relief("h1", crowd=min(CROWD, limits.max_connections))
        self.loop = asyncio.get_running_loop()  # made by serve_until, on its loop
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.ready.set_result(None)
        self._stop = self.loop.create_future()
        self._room: asyncio.Future[None] | None = None  # the accept loop waits for a slot
        self._connecting: set[asyncio.Task[None]] = set()  # accepted, transport being made
        # Accepted and not yet opened: the bound counts each connection once, here and then
        # in ``connections``. (Counting the tasks above instead counted a connection twice
        # from its ``connection_made`` until its task's end was seen, a loop turn or two
        # later: a burst of a few thousand looked like the bound, and the rest of a crowd
        # waited in the backlog for a close that only the head deadline would bring.)
        self._arriving = 0
        self._all_closed: asyncio.Future[None] | None = None
        self._second = -1
        self._tails: tuple[bytes, bytes, bytes, bytes] = (b"", b"", b"", b"")
        self._accept_errors = BoundedLog(log, "accept failed %d more times in %g s: %s", "failures")
        # The idle connections oldest at the last look, with the time each was idle since
        self._candidates: deque[tuple[float, Connection]] = deque()
        self._idle_seen = 0  # idle connections at that look
        self._reclaims = BoundedLog(
            log, "closed idle connections for waiting clients %d more times in %g s: %s", "times"
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> None:
        loop = self.loop
        lifespan = Child(self.app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}})
        started = await lifespan.event("startup")
        if started["type"].endswith("failed"):
            raise StartupFailed(started.get("message") or "the app's start hooks failed")
        accepting = loop.create_task(self._accept())
        try:
            await self._stop
        finally:
            accepting.cancel()
            for connection in list(self.connections):
                connection.stop()
            if self.connections or self.requests:
                self._all_closed = loop.create_future()
                await self._all_closed
            await lifespan.event("shutdown")

    def stop(self) -> None:
        if not self._stop.done():
            self._stop.set_result(None)

    async def _accept(self) -> None:
        loop = self.loop
        listener = self.listener
        listener.setblocking(False)
        while True:
            if len(self.connections) + self._arriving >= self.max_connections:
                await self._room_at_the_bound()
                continue
            try:
                client, _ = await loop.sock_accept(listener)
            except OSError as exc:
                if exc.errno in _TRANSIENT:
                    self._accept_errors.note(logging.WARNING, "accept", "accept failed: %s", exc)
                    await asyncio.sleep(ACCEPT_RETRY)
                continue  # a client that left before it was accepted, or the like
            clients = [client]
            # The rest of a burst at once: one loop turn per connection kept 64 new clients
            # waiting up to a second behind the busy ones (wrk's p99).
            with contextlib.suppress(OSError):
                while len(self.connections) + self._arriving + len(clients) < self.max_connections:
                    clients.append(listener.accept()[0])
            self._arriving += len(clients)
            for client in clients:
                connecting = loop.create_task(self._connect(client))
                self._connecting.add(connecting)
                connecting.add_done_callback(self._connecting.discard)

    async def _room_at_the_bound(self) -> None:
        """Wait for a connection to close; a client waiting in the backlog meanwhile makes
        the idle ones close (:meth:`_client_waits`)."""
        loop = self.loop
        room = self._room = loop.create_future()
        fd = self.listener.fileno()
        loop.add_reader(fd, self._client_waits)
        recheck = loop.call_later(RECLAIM_RECHECK, self._make_room)
        try:
            await room
        finally:
            loop.remove_reader(fd)
            recheck.cancel()

    def _client_waits(self) -> None:
        """A client waits in the backlog and every slot is taken: close the connections idle
        longest. With none idle the client waits for a close (or the next look)."""
        self.loop.remove_reader(self.listener.fileno())  # one look per wait: no busy loop
        oldest = self._idle_longest()
        for connection in oldest:
            connection.close_idle()
        if oldest:
            self._reclaims.note(
                logging.WARNING,
                "bound",
                "%d connections (http.max_connections) are not enough: closed the %d idle"
                " longest for clients waiting",
                self.max_connections,
                len(oldest),
            )

    def _idle_longest(self) -> list[Connection]:
        """An eighth of the idle connections (at least one, at most ``RECLAIM_BATCH``), those
        idle longest. A look at every connection costs ~0.4 us each (6.5 ms at 16,384), so
        one look keeps its ``RECLAIM_CANDIDATES`` oldest for the waits after it: each taken
        only if still idle since then (any other idle one became so later, so is younger).
        Without that, clients arriving at a full server made it look at every connection
        for each 32 it closed: 200 us per connection, a cheap way to take its CPU."""
        chosen = self._still_idle_candidates()
        if not chosen:  # none left from the last look: a new one
            idle = [connection for connection in self.connections if connection.idle]
            self._idle_seen = len(idle)
            oldest = heapq.nsmallest(RECLAIM_CANDIDATES, idle, key=Connection.idle_since)
            self._candidates = deque((each.idle_since(), each) for each in oldest)
            chosen = self._still_idle_candidates()
        return chosen

    def _still_idle_candidates(self) -> list[Connection]:
        """Up to nginx's share of the last look's candidates, each still idle since then."""
        wanted = max(1, min(RECLAIM_BATCH, self._idle_seen // 8))
        candidates = self._candidates
        chosen: list[Connection] = []
        while candidates and len(chosen) < wanted:
            since, connection = candidates.popleft()
            if connection.idle and connection.head_since == since:
                chosen.append(connection)
        return chosen

    async def _connect(self, client: socket.socket) -> None:
        connection = Connection(self)
        try:
            await self.loop.connect_accepted_socket(lambda: connection, client)
        except OSError:
            client.close()
            if connection.transport is None:  # never opened: no longer arriving
                self._arriving -= 1
                self._make_room()

    # -- connections -----------------------------------------------------------------------

    def opened(self, connection: Connection) -> None:
        self._arriving -= 1
        self.connections.add(connection)
        self.relief.arrived(len(self.connections))
        if self._stop.done():
            connection.stop()

    def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.relief.left(len(self.connections))
        self._make_room()
        self._all_done()

    def _make_room(self) -> None:
        """Wake the accept loop if it waits for a slot."""
        room = self._room
        if room is not None and not room.done():
            self._room = None
            room.set_result(None)

    def answering(self, request: asyncio.Future[None]) -> None:
        self.requests.add(request)
        request.add_done_callback(self._answered)

    def _answered(self, request: asyncio.Future[None]) -> None:
        self.requests.discard(request)
        self._all_done()

    def _all_done(self) -> None:
        closed = self._all_closed
        if closed is not None and not closed.done() and not self.connections | self.requests:
            closed.set_result(None)

    def date_tail(self, keep_alive: bool, http10: bool = False) -> bytes:
        """The head's last lines: ``Date`` (made once a second), ``Connection`` when the
        connection closes after this response or is a kept-alive HTTP/1.0 one, the blank line."""
        now = int(time.time())
        if now != self._second:
            date = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n\r\n"
            self._tails = (
                date,
                b"connection: keep-alive\r\n" + date,
                b"connection: close\r\n" + date,
                b"connection: close\r\n" + date,
            )
            self._second = now
        return self._tails[(not keep_alive) * 2 + http10]
