"""The service shell: the ASGI frame every service runs in, so each keeps only its domain.

What it does for every service, the same way:

- lifespan: the service's start and stop hooks (errors reported to the server);
- ``/_health`` (and the aliases a service must keep for its users, e.g. camo's
  ``/healthcheck``): 200 ``OK``, or 503 with one line per problem the service reports;
- ``/metrics``: the service's registry, summed over its workers;
- security headers on every answer, HSTS on those to TLS requests (directly, or per a trusted
  proxy's ``X-Forwarded-Proto``);
- methods: a service names the ones it takes; others get 405 with ``Allow``;
- request framing: a Transfer-Encoding other than ``chunked`` alone is 501 and the end of
  the connection (:func:`_only_chunked`);
- counting: responses by status (and by part, where a service has parts), body bytes and the
  requests in flight, as plain integers turned into Prometheus samples at scrape time (a
  labelled child's lock per request cost more than the rest of the frame);
- an optional access log, one structured line per request;
- any unhandled error: 500 ``Internal error`` with no detail to the client, the traceback to
  the log, counted like any answer. The log is bounded (:mod:`pythonhosted.boundedlog`): the
  first few tracebacks a minute of each kind of error (its type and the line that raised it),
  then one line counting the rest. A bug one request can reach, every request can: a
  traceback each (~2.5 KB) let any client fill the disk at the service's rate (a hostile
  If-Modified-Since did). If the response had already started, the connection is cut short
  (the client sees it from Content-Length), which is all HTTP allows then.
  A service that must end a started response unfinished on purpose (camo, when an upstream
  body breaks off) raises :class:`CutShort`: the connection is dropped the same way, without
  the traceback, which a hostile upstream could otherwise make thousands of times a minute.
  A handler whose client hung up before it was done (``web.departure``) may raise
  :class:`~pythonhosted.web.departure.Departed`: counted as 499, nothing more is sent.

The frame's own cost on the files edge's hot path is one ``Request`` and one counting wrapper
per request (bench/files.py measures it).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pythonhosted.boundedlog import BoundedLog
from pythonhosted.web.clientfacts import ClientFacts
from pythonhosted.web.departure import CLIENT_GONE, Departed
from pythonhosted.web.h1.quick import Quick, QuickAnswer
from pythonhosted.web.lifespan import Hook, handle_lifespan
from pythonhosted.web.metrics import ServiceRegistry
from pythonhosted.web.relief import Relief
from pythonhosted.web.request import Request
from pythonhosted.web.responses import send_metrics, send_response
from pythonhosted.web.security import HSTS, SECURITY
from pythonhosted.web.types import Headers, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


access_log = logging.getLogger("pythonhosted.access")


class CutShort(Exception):
    """Raised by a handler to drop the connection of a response it has started and cannot
    finish (a client must never take the part for the whole); the handler has said why."""


Handler = Callable[[Request, Receive, Send], Awaitable[None]]
HealthCheck = Callable[[], list[str]]
TEXT = b"text/plain; charset=UTF-8"
HEALTH = "/_health"
# A 501 is cacheable by default (RFC 9111 §4.2.2): a shared cache in front must not keep the
# refusal of one hostile request as the page every client gets.
CLOSE: Headers = [(b"connection", b"close"), (b"cache-control", b"no-store")]
METRICS = "/metrics"


class ResponseTallies(Collector):
    """``{service}_requests{[part,] status}``, ``{service}_bytes_sent``,
    ``{service}_requests_in_flight`` (and for a service that answers quickly,
    ``{service}_quick_answers``), counted as ints.

    Requests in flight are those whose handler has not returned, the scrape reading them
    included: a request that never finishes (a client that left and a body nobody stops
    sending) shows there as a floor that only grows, which is how such a leak is seen.
    """

    def __init__(self, service: str, parts: bool) -> None:
        self.service = service
        self.parts = parts
        self.by_status: Tally[int] = Tally()  # an int key hashes faster than a tuple
        self.by_part: Tally[tuple[str, int]] = Tally()
        self.bytes_sent = 0
        self.in_flight = 0
        self.quick = 0  # of the responses: answered inside the connection (web.h1)
        self.answers_quickly = False  # the service can: the counter is exported

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        if self.parts:
            responses = CounterMetricFamily(
                f"{self.service}_requests",
                "Responses by part and HTTP status.",
                labels=["part", "status"],
            )
            # dict() copies atomically: the metrics thread reads while the loop thread counts.
            for (part, status), count in sorted(dict(self.by_part).items()):
                responses.add_metric([part, str(status)], count)
        else:
            responses = CounterMetricFamily(
                f"{self.service}_requests", "Responses by HTTP status.", labels=["status"]
            )
            for status, count in sorted(dict(self.by_status).items()):
                responses.add_metric([str(status)], count)
        yield responses
        yield CounterMetricFamily(
            f"{self.service}_bytes_sent", "Body bytes sent to clients.", value=self.bytes_sent
        )
        if self.answers_quickly:
            yield CounterMetricFamily(
                f"{self.service}_quick_answers",
                "Of the responses: those answered inside the connection, without ASGI.",
                value=self.quick,
            )
        yield GaugeMetricFamily(
            f"{self.service}_requests_in_flight",
            "Requests being answered, the scrape that reads this included.",
            value=self.in_flight,
        )


class _Done:
    """An awaitable that is already done (what holding the head back answers at once)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return _EXHAUSTED


_EXHAUSTED: Generator[None, None, None] = (_ for _ in ())
next(_EXHAUSTED, None)  # finished: every await of DONE ends at once
DONE = _Done()


class CountingSend:
    """Wraps ``send`` to remember the status and count body bytes for the metrics.

    The head is held back until the first body message: granian does the same, so nothing is
    lost, and an error raised between the two can still be answered with a proper 500 (granian
    would otherwise answer its own bare one, without the service's headers).

    Once the head is out, a body message goes straight to the server and the caller gets the
    server's own awaitable, not a coroutine around it: granian's (and ``web.h1``'s) says
    whether the message had to wait for room in the connection's queue (a pending future) or
    not (one already done), which is how the object responder tells a client that is behind
    (``web/objects.py``); it also saves a coroutine per message.
    """

    __slots__ = ("body_bytes", "headers", "pending", "send", "started", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False  # the head went to the server
        self.pending: Message | None = None  # a head not passed on yet
        self.status = 500
        self.body_bytes = 0
        self.headers: Headers = []

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.body":
            self.body_bytes += len(message.get("body", b""))
            if self.pending is None:
                return self.send(message)
        elif kind == "http.response.start":
            self.status = message["status"]
            self.headers = message["headers"]
            self.pending = message
            return DONE
        return self._after_head(message)

    async def _after_head(self, message: Message) -> None:
        """The first message after the head (which goes first), or another kind of message."""
        if self.pending is not None:
            self.started = True
            pending, self.pending = self.pending, None
            await self.send(pending)
        sending = self.send(message)
        del message  # the server has its copy: a slow client's piece is not held twice
        await sending


class Service:
    """One service's ASGI app: the shell around ``handler``.

    ``methods``: what the handler takes (None: every method); ``allow``: what a 405 advertises
    (a service may take methods it does not advertise, as the files edge does PURGE).
    ``part``: a label for each path (conveyor's legacy/docs), or None for none; ``tallies``:
    counters the service registered itself, to share them with code counting elsewhere.
    ``extra_headers``: what the service adds to the security headers on its own answers.
    ``relief``: give memory back once a crowd of requests has gone (:mod:`.relief`).
    """

    def __init__(
        self,
        name: str,
        handler: Handler,
        registry: ServiceRegistry,
        *,
        client: ClientFacts | None = None,
        security: Headers = SECURITY,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
        methods: Iterable[str] | None = None,
        allow: str | None = None,
        health: HealthCheck | None = None,
        health_aliases: Iterable[str] = (),
        hooks: Sequence[tuple[Hook, Hook]] = (),
        part: Callable[[str], str] | None = None,
        tallies: ResponseTallies | None = None,
        metrics: bool = True,
        access_log: bool = False,
        relief: bool = False,
        quick: Quick | None = None,
    ) -> None:
        self.name = name
        self.handler = handler
        self.registry = registry
        self.client = client or ClientFacts()
        self._shell_plain = [*security, *extra_headers]
        self._shell_tls = [*security, HSTS, *extra_headers]
        self.methods = frozenset(methods) if methods is not None else None
        allowed = allow or ", ".join(sorted(self.methods or ("GET", "HEAD")))
        self._shell_allow = (b"allow", allowed.encode())
        self.health = health
        self.own_paths = frozenset({HEALTH, *health_aliases, *([METRICS] if metrics else [])})
        self.hooks = tuple(hooks)
        self.part = part
        self.access_log = access_log
        if tallies is None:
            tallies = ResponseTallies(name, parts=part is not None)
            registry.register(tallies)
        self.tallies = tallies  # a service may count elsewhere too (conveyor's mounted legacy)
        self.relief: Relief | None = None
        if relief:
            self.relief = Relief(name)
            registry.register(self.relief)
        self._errors = BoundedLog(
            log, "unhandled errors: %d more in %g s (not logged one by one): %s", "errors"
        )
        # What the server may answer inside the connection (pythonhosted.web.h1): the
        # handler's quick answers, counted here. Not with an access log (one line per request
        # is the point of it) nor parts (labels per path).
        self._handler_quick = quick
        self.quick: Quick | None = (
            self._counted_quick if quick is not None and not access_log and part is None else None
        )
        tallies.answers_quickly = quick is not None  # 0 with an access log: it says why

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One flat coroutine on purpose: every extra await level cost the files edge's hot
        # path about 0.3 us per request.
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await handle_lifespan(receive, send, self._startup, self._shutdown)
            return
        started = time.monotonic() if self.access_log else 0.0
        headers: dict[bytes, bytes] = dict(scope["headers"])
        tls = self.client.is_tls(scope, headers)
        request = Request(
            scope, tls, headers, self._shell_tls if tls else self._shell_plain, receive
        )
        counted = CountingSend(send)
        tallies = self.tallies
        tallies.in_flight += 1
        relief = self.relief
        if relief is not None:
            relief.arrived(tallies.in_flight)
        try:
            path = request.path
            if b"transfer-encoding" in headers and not _only_chunked(scope["headers"]):
                await self.text(counted, request, 501, "Transfer coding not implemented", CLOSE)
            elif path in self.own_paths:
                await self._own(request, counted)
            elif self.methods is None or request.method in self.methods:
                await self.handler(request, receive, counted)
            else:
                await self.text(counted, request, 405, "Method not allowed", [self._shell_allow])
        except CutShort:
            raise  # deliberate, and counted and logged by the service: only the server's part
        except Departed:
            counted.status = CLIENT_GONE  # nothing more to send: nobody is there to take it
        except Exception as exc:
            self._errors.note(
                logging.ERROR,
                _where(exc),
                "unhandled error for %s %r",
                request.method,
                request.raw_path,
                exc_info=True,
            )
            if counted.started:
                raise  # the head is out: cutting the connection short is all that is left
            await self.text(counted, request, 500, "Internal error")
        finally:
            tallies.in_flight -= 1
            if relief is not None:
                relief.left(tallies.in_flight)
            if self.part is None:
                tallies.by_status[counted.status] += 1
            else:
                tallies.by_part[self.part(request.path), counted.status] += 1
            tallies.bytes_sent += counted.body_bytes
            if self.access_log:
                self._log_access(request, counted, time.monotonic() - started)

    def _counted_quick(
        self,
        method: str,
        target: bytes,
        headers: dict[bytes, bytes],
        client: tuple[str, int] | None,
    ) -> QuickAnswer | None:
        assert self._handler_quick is not None
        answer = self._handler_quick(method, target, headers, client)
        if answer is not None:
            tallies = self.tallies
            tallies.by_status[answer.status] += 1
            tallies.bytes_sent += len(answer.body)
            tallies.quick += 1
        return answer

    async def _startup(self) -> None:
        for start, _ in self.hooks:
            await start()

    async def _shutdown(self) -> None:
        for _, stop in reversed(self.hooks):
            await stop()

    async def _own(self, request: Request, send: Send) -> None:
        """``/_health`` (and aliases) and ``/metrics``."""
        if request.method not in ("GET", "HEAD"):
            await self.text(send, request, 405, "Method not allowed", [(b"allow", b"GET, HEAD")])
        elif request.path == METRICS:
            await send_metrics(send, self.registry, request.security)
        else:
            problems = self.health() if self.health is not None else []
            await self.text(send, request, 503 if problems else 200, "\n".join(problems) or "OK")

    @staticmethod
    async def text(
        send: Send, request: Request, status: int, text: str, extra: Headers | None = None
    ) -> None:
        """A short plain-text answer with the request's security headers (HEAD: no body)."""
        await send_response(
            send,
            status,
            (text + "\n").encode(),
            content_type=TEXT,
            headers=request.security + extra if extra else request.security,
            head=request.method == "HEAD",
        )

    def _log_access(self, request: Request, sent: CountingSend, seconds: float) -> None:
        client = request.scope.get("client")
        access_log.info(
            "%s %s %d",
            request.method,
            request.raw_path.decode("latin-1"),
            sent.status,
            extra={
                "service": self.name,
                "method": request.method,
                "path": request.raw_path.decode("latin-1"),
                "status": sent.status,
                "bytes": sent.body_bytes,
                "duration_ms": round(seconds * 1000, 3),
                "client": client[0] if client else None,
                "user_agent": request.header(b"user-agent"),
            },
        )


def _only_chunked(fields: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether every Transfer-Encoding the request names is ``chunked`` (once, last).

    The server (hyper) frames a body by ``chunked`` when it is the last coding and passes the
    others (``gzip, chunked``) through, undone; a proxy in front that reads the same head
    otherwise (as an unknown coding, or by a Content-Length) can take what followed the body
    for another request, or the other way round. RFC 9112 §6.1 says 501 for a coding the
    server does not implement; the connection is closed with it, so nothing sent after the
    head is ever read as a request.
    """
    codings = [
        coding.strip().lower()
        for name, value in fields
        if name == b"transfer-encoding"
        for coding in value.split(b",")
    ]
    return codings == [b"chunked"]


def _where(exc: BaseException) -> str:
    """An error's kind, for the bounded log: its type and the line that raised it."""
    frames = traceback.extract_tb(exc.__traceback__, limit=-1)
    place = f" at {frames[0].filename}:{frames[0].lineno}" if frames else ""
    return type(exc).__name__ + place
