"""One camo request: verify the signature, fetch under one deadline, check, stream back.

Checks happen in the order that costs least and leaks least: signature before any network
activity, status and headers (type, Content-Length) before reading any body, and the size limit
again on every chunk since a chunked body announces no length.

granian does not cancel a request whose client hangs up, so camo watches for it once a
request's work upstream has gone on for ``WATCH_AFTER`` (``web.departure.Presence``): the
exchange is then cancelled wherever it is (waiting for a stream slot, connecting, waiting for
the headers, reading the body) and its upstream connection dropped, unless coalesced requests
still wait for what it will store (``cache/layer.py``). Otherwise each client that asks and
leaves would have camo fetch a whole image for nobody. The request is counted as 499.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from yarl import URL

from pythonhosted.camo.cache.entry import Entry
from pythonhosted.camo.cache.layer import Fill, ImageCache, NotModified
from pythonhosted.camo.deadline import Deadline
from pythonhosted.camo.errors import Refused
from pythonhosted.camo.headers import (
    REQUEST_HEADERS,
    RESPONSE_HEADERS,
    accept_header,
    forwarded_for,
    names_this_server,
    relayed_response_headers,
    upstream_request_headers,
)
from pythonhosted.camo.hostturns import HostTurns
from pythonhosted.camo.http1 import BodyError, Response
from pythonhosted.camo.mediatype import BadMediaType, MediaType, parse_media_type
from pythonhosted.camo.metrics import CamoMetrics
from pythonhosted.camo.policy import AddressPolicy
from pythonhosted.camo.refusals import RefusalLog
from pythonhosted.camo.relay import CutOff, Relay
from pythonhosted.camo.signatures import verify
from pythonhosted.camo.sniff import GENERIC_TYPES, SNIFF_BYTES, sniff_image
from pythonhosted.camo.upstream import Upstream
from pythonhosted.web.departure import CLIENT_GONE, Departed
from pythonhosted.web.h1.quick import QuickAnswer, header_lines
from pythonhosted.web.streams import Busy, slots_of
from pythonhosted.web.types import Headers, Receive, Scope, Send

log = logging.getLogger(__name__)

#: Signed URLs remembered as verified; only valid signatures are kept (a refusal raises, and
#: lru_cache does not cache exceptions), so junk requests cannot fill the cache. Paths longer
#: than MEMO_KEY_CHARS are verified every time instead, so the cache's bytes stay bounded too
#: (4096 x ~1.5 KB of key and URL at most).
VERIFIED_URLS = 4096
MEMO_KEY_CHARS = 1024
#: seconds of work upstream after which camo starts watching for the client's departure.
#: The watch costs ~50 µs of CPU through granian (a third of a miss), so the many exchanges
#: that end sooner go without it; one whose client left wastes at most this long of upstream
#: reading (and never more than the size limit), where the unwatched ones read whole images.
WATCH_AFTER = 0.5
NOT_MODIFIED_HEADERS = frozenset({b"cache-control", b"etag", b"expires", b"last-modified"})
#: request headers that take a request off the quick path (:meth:`Proxy.quick`): a range
#: (relayed from upstream), a Via (the loop check), conditionals (a 304 from the cache)
NOT_QUICK = frozenset({b"range", b"via", b"if-none-match", b"if-modified-since"})
#: headers of camo's own that only the server may write (go-camo's --no-fk adds Connection)
_SERVERS_HEADERS = frozenset({b"connection", b"content-length", b"transfer-encoding"})
_RELAYED_BUT_TYPE = frozenset(name.lower().encode() for name in RESPONSE_HEADERS) - {
    b"content-type"
}


@dataclass(frozen=True)
class ProxyOptions:
    key: bytes
    max_bytes: int | None  # None: no limit (go-camo's --max-size 0)
    timeout: float
    media_types: frozenset[str]  # "image", plus "video" / "audio" when enabled
    user_agent: str
    server_name: str  # sent as Via; a request whose Via names it is a loop
    always_headers: Headers  # security headers, Server and the operator's extra headers
    max_size_redirect: str | None = None  # a URL, or "original" (the image's own URL)
    forwarded_for: bool = False  # --enable-xfwd4
    purge_secret: bytes | None = None  # the bearer token PURGE needs

    @functools.cached_property
    def accept(self) -> str:
        """Worked out once, not per request."""
        return accept_header(self.media_types)


#: whose address --enable-xfwd4 may pass on: public ones only, whatever --allow-network says
_PUBLIC_ONLY = AddressPolicy()


def _media_type(response: Response) -> MediaType | None:
    """Upstream's one Content-Type, parsed; None if it sent none; Refused if it sent more
    than one or a malformed one."""
    values = response.headers_named(b"content-type")
    if not values:
        return None
    if len(values) > 1:
        raise Refused(403, "content_type", "more than one Content-Type header")
    try:
        return parse_media_type(values[0])
    except BadMediaType as exc:
        raise Refused(403, "content_type", str(exc)) from None


class Proxy:
    def __init__(
        self,
        options: ProxyOptions,
        upstream: Callable[[], Upstream],
        metrics: CamoMetrics,
        cache: ImageCache | None = None,
    ) -> None:
        self._options = options
        self._cache = cache
        self._upstream = upstream
        self._metrics = metrics
        self._verified = functools.lru_cache(maxsize=VERIFIED_URLS)(self._verify)
        self._refusals = RefusalLog()
        self._turns = HostTurns(slots_of("camo"))
        # after a hit's Age: its cache result and camo's own headers, as Relay.start adds them
        self._hit_tail = header_lines(((b"x-camo-cache", b"HIT"), *options.always_headers))

    @property
    def answers_quickly(self) -> bool:
        """Whether :meth:`quick` can answer anything: there is a cache, and camo's own headers
        leave the connection's framing to the server."""
        names = {name.lower() for name, _ in self._options.always_headers}
        plain = self._hit_tail is not None
        return self._cache is not None and plain and names.isdisjoint(_SERVERS_HEADERS)

    def _size_redirect(self, url: str) -> bytes:
        """Where ``--max-size-redirect`` sends an over-size image: the configured URL, or
        the image's own URL (percent-encoded by yarl, so no byte can break the header)."""
        target = self._options.max_size_redirect
        return str(URL(url) if target == "original" else URL(target or "")).encode("ascii")

    @property
    def verified(self) -> int:
        return self._verified.cache_info().currsize

    async def _upstream_failed(self, relay: Relay, exc: TimeoutError | BodyError) -> int:
        """Counted, and answered 504 (the deadline passed) or 502 (the body broke off); once
        the answer has started, the connection is cut instead."""
        if isinstance(exc, TimeoutError):
            cut = "upstream deadline passed mid-body"
            refusal = Refused(504, "timeout", "upstream took too long")
        else:
            cut = "upstream body broke off"
            refusal = Refused(502, "upstream_body", f"upstream body broke off: {exc}")
        self._metrics.failed.labels(refusal.reason).inc()
        if relay.started:
            raise self._cut(refusal.reason, cut) from None
        await relay.refuse(refusal)
        return refusal.status

    def _verify(self, path: str, query: bytes) -> str:
        """The signed target URL; the HMAC is computed once per distinct URL, not per request."""
        url = verify(self._options.key, path, query)
        if url is None:
            raise Refused(404, "signature", "bad signature or encoding")
        return url

    def quick(
        self,
        method: str,
        target: bytes,
        headers: dict[bytes, bytes],
        client: tuple[str, int] | None,
    ) -> QuickAnswer | None:
        """A hit in the memory tier, answered inside the connection (:mod:`pythonhosted.web.h1`):
        a GET or HEAD of a path-form camo URL (``/{digest}/{url}``; ``target`` has no query,
        which only the legacy form reads) whose fresh image is in memory, with none of
        ``NOT_QUICK``'s headers. The same checks as :meth:`__call__` makes (the signature,
        today's rules for the URL and for a redirect's final URL), the same answer but its
        ``Date`` and the same counts; None for every other request, answered over ASGI.

        A hit through ASGI cost ~90 µs of CPU per request against nginx's ~28 (session 21):
        the server's and the shell's work per request, not the cache's."""
        cache = self._cache
        if (
            cache is None
            or len(target) > MEMO_KEY_CHARS
            or b"%" in target
            or not headers.keys().isdisjoint(NOT_QUICK)
        ):
            return None
        started = time.perf_counter()
        now = time.time()
        try:
            path = target.decode("ascii")
            if path.count("/") != 2:
                return None  # the legacy form, or no camo URL (health, metrics, junk)
            url = self._verified(path, b"")
            upstream = self._upstream()
            upstream.first_hop(url)  # refused now: never answered from the cache
            entry = cache.held_fresh(url, upstream.check_final, now)
        except (UnicodeDecodeError, Refused):
            return None  # answered (and refused, counted) over ASGI
        if entry is None:
            return None
        head = entry.head
        if head is None:
            head = entry.head = self._hit_head(entry)
        if not head:
            return None
        before_age, after_age = head
        body = entry.body if method == "GET" else b""
        assert body is not None  # held_fresh gives entries whose body is in memory
        age = b"age: %d\r\n" % entry.current_age(now)
        cache.counted_hit(entry, method)
        metrics = self._metrics
        metrics.response(200)
        metrics.size.observe(len(body))
        metrics.duration.observe(time.perf_counter() - started)
        return QuickAnswer(before_age + age + after_age, body)

    def _hit_head(self, entry: Entry) -> tuple[bytes, bytes] | tuple[()]:
        """A hit's head as :meth:`ImageCache._send` and the server give it, in two parts
        around its Age: the status line and the entry's headers; camo's own and the length
        (which the server writes last). Empty if a header holds CR, LF or NUL (the server
        answers those 500 over ASGI)."""
        lines = header_lines(entry.headers)
        if lines is None or self._hit_tail is None:
            return ()
        length = b"content-length: %d\r\n" % entry.length
        return b"HTTP/1.1 200 OK\r\n" + lines, self._hit_tail + length

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, named: Mapping[bytes, bytes]
    ) -> None:
        """Answer one request; ``named`` is its headers by (lower-case, as ASGI gives them)
        name, which spares a scan of the header list for each header a request seldom has.

        :class:`Departed` if the client hung up before the answer was done (the shell counts
        it as 499).
        """
        started = time.perf_counter()
        method: str = scope["method"]
        relay = Relay(send, receive, self._options.always_headers, head=method == "HEAD")
        status = 200
        try:
            status = await self._proxy(scope, named, method, relay)
        except Departed:
            pass  # counted below
        except asyncio.CancelledError:
            if relay.watched is None or not relay.watched.departed():
                raise
        except Refused as refusal:
            status = refusal.status
            self._metrics.failed.labels(refusal.reason).inc()
            self._refusals.refused(refusal)
            await relay.refuse(refusal)
        except (TimeoutError, BodyError) as exc:
            # A client that left had its exchange go on for coalesced requests: 499 below,
            # neither a refusal nor a cut (they get their own answers from the exchange).
            if not relay.gone:
                status = await self._upstream_failed(relay, exc)
        except CutOff:
            if not relay.gone:
                raise
        except Exception:
            # A bug, not a refusal: still an answer with camo's headers, logged and counted.
            log.exception("camo: unexpected error proxying %s", scope["path"][:200])
            self._metrics.failed.labels("internal").inc()
            if relay.started:
                raise CutOff("unexpected error mid-body") from None
            status = 500
            await relay.refuse(Refused(500, "internal", "internal error"))
        finally:
            if relay.watched is not None:
                relay.watched.close()
            self._metrics.duration.observe(time.perf_counter() - started)
        gone = relay.gone
        if gone:
            status = CLIENT_GONE
        self._metrics.response(status)
        self._metrics.size.observe(relay.body_bytes)
        if gone:
            raise Departed

    def _cut(self, reason: str, detail: str) -> CutOff:
        """What to raise to drop a started response, logged within the refusals' bound."""
        self._refusals.cut(reason, detail)
        return CutOff(detail)

    async def _proxy(
        self, scope: Scope, named: Mapping[bytes, bytes], method: str, relay: Relay
    ) -> int:
        options = self._options
        if method == "PURGE" and self._cache is not None:
            return await self._purge(scope, relay)
        if method not in ("GET", "HEAD"):
            # The client's own text, so bounded: a request line may carry 8 KB of "method".
            shown = method if len(method) <= 16 else method[:16] + "..."
            raise Refused(405, "method", f"method {shown} not allowed")
        client_headers = scope["headers"]
        if b"via" in named and names_this_server(client_headers, options.server_name):
            raise Refused(404, "loop", f"request loop: Via already names {options.server_name}")
        path: str = scope["path"]
        query: bytes = scope.get("query_string", b"")
        if len(path) + len(query) <= MEMO_KEY_CHARS:
            url = self._verified(path, query)
        else:
            url = self._verify(path, query)
        peer = scope.get("client")
        headers = upstream_request_headers(
            () if REQUEST_HEADERS.isdisjoint(named) else client_headers,
            accept=options.accept,
            user_agent=options.user_agent,
            via=options.server_name,
            forwarded_for=(
                forwarded_for(client_headers, peer[0] if peer else None, _PUBLIC_ONLY)
                if options.forwarded_for
                else None
            ),
        )
        cache = self._cache
        if cache is not None and b"range" not in named and await cache.available():
            upstream = self._upstream()
            target = upstream.first_hop(url)  # refused now: never answered from the cache
            return await cache.serve(
                method,
                url,
                client_headers,
                headers,
                relay,
                functools.partial(self._fetch, method, url, relay),
                upstream.check_final,
                credentials=target.raw_user is not None or target.raw_password is not None,
            )
        outcome = await self._fetch(method, url, relay, headers, None, False)
        assert not isinstance(outcome, NotModified)
        return outcome

    async def _fetch(
        self,
        method: str,
        url: str,
        relay: Relay,
        headers: dict[str, str],
        fill: Fill | None,
        revalidating: bool,
    ) -> int | NotModified:
        """One upstream exchange under the deadline, relayed (and stored by ``fill``)."""
        upstream = self._upstream()
        task = asyncio.current_task(upstream.loop)  # given the loop: no lookup of it
        assert task is not None
        # from WATCH_AFTER on, a client that leaves stops the exchange
        relay.presence.watch(task, WATCH_AFTER)
        # The exchange holds an upstream connection and maybe the cache's file: a stream slot,
        # within its host's share of them.
        first = upstream.first_hop(url)
        host = f"{first.raw_host}:{first.port}"
        try:
            await self._turns.take(host, self._options.timeout)
        except Busy:
            raise Refused(503, "busy", "too many images in flight; retry shortly") from None
        try:
            async with Deadline(upstream.loop, task, self._options.timeout):
                response = await upstream.open(method, url, headers)
                try:
                    if revalidating and response.status == 304:
                        return NotModified(response.headers)
                    return await self._relay(method, url, response, relay, fill)
                finally:
                    response.release()
        finally:
            self._turns.give_back(host)

    async def _purge(self, scope: Scope, relay: Relay) -> int:
        """``PURGE /{digest}/{url}`` with ``Authorization: Bearer SECRET``: drop one entry."""
        assert self._cache is not None
        secret = self._options.purge_secret
        authorization = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(401, "purge", "purge needs Authorization: Bearer")
        if secret is None or not hmac.compare_digest(token.strip().encode(), secret):
            raise Refused(403, "purge", "purge credential refused")
        url = self._verify(scope["path"], scope.get("query_string", b""))
        await self._cache.indexed()
        try:
            dropped = self._cache.purge(url)
        except OSError as exc:  # the journal's disk is full: the other workers would not know
            log.warning(
                "camo cache: purge of %s not shared with the other workers: %s",
                url[:200],
                exc.strerror,
            )
            raise Refused(
                503, "purge", f"purge not recorded for every worker ({exc.strerror}); try again"
            ) from exc
        shared = self._cache.purges is not None  # this worker cannot know what the others held
        log.info("camo cache: purged %s (%s)", url[:200], "dropped" if dropped else "not cached")
        await relay.text(200, "Purged" if dropped or shared else "Not cached")
        return 200

    async def _relay(
        self, method: str, url: str, response: Response, relay: Relay, fill: Fill | None = None
    ) -> int:
        status = response.status
        if status == 304:
            relay.start(304, relayed_response_headers(response.headers, NOT_MODIFIED_HEADERS))
            await relay.end()
            return 304
        if status == 404:
            raise Refused(404, "upstream_404", "upstream answered 404")
        if 500 <= status <= 504:
            raise Refused(502, "upstream_5xx", f"upstream answered {status}")
        if status not in (200, 206):
            raise Refused(404, "upstream_status", f"upstream answered {status}")
        limit = self._options.max_bytes
        length = response.content_length
        if length is not None and limit is not None and length > limit:
            self._metrics.content_length_exceeded.inc()
            reason = f"content length {length} over the {limit} byte limit"
            if self._options.max_size_redirect is None:
                raise Refused(404, "content_length", reason)
            await relay.redirect(self._size_redirect(url), reason)
            return 302
        media = _media_type(response)
        first = b""
        if (media is None or media.essence in GENERIC_TYPES) and status == 200 and method == "GET":
            first = await response.read_first(SNIFF_BYTES)
            sniffed = sniff_image(first)
            if sniffed is not None:
                media = MediaType("image", sniffed, ())
        if media is None or media.type not in self._options.media_types:
            shown = "(none)" if media is None else media.essence
            raise Refused(403, "content_type", f"content type {shown} not allowed")
        headers = relayed_response_headers(response.headers, _RELAYED_BUT_TYPE)
        headers.append((b"content-type", media.header()))
        relay.start(status, headers)
        if fill is not None and method == "GET":
            fill.start(status, headers, response.headers, response.url or url, length)
            fill.write(first)
        else:
            fill = None
        await relay.body(first)
        received = len(first)
        if method == "GET":
            # Whatever one socket read delivered, no re-chunking; the socket is read again only
            # once this chunk has been sent, so a slow client holds back the upstream.
            while chunk := await response.read():
                received += len(chunk)
                if limit is not None and received > limit:
                    self._metrics.truncated.inc()
                    if relay.started:
                        raise self._cut("too_large", f"body passed the {limit} byte limit")
                    raise Refused(404, "too_large", f"body passed the {limit} byte limit")
                if fill is not None:
                    fill.write(chunk)
                await relay.body(chunk, last=received == length)
        await relay.end()
        return status
