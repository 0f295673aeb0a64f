"""The files edge as an ASGI app: files-edge spec rules 1-24.

The hot path (a GET for a hashed path already seen) costs one dict lookup for the object, its
response headers built once, a handful of header comparisons and one string (the served and
download lines) appended to the download log's memory buffer once the response is done.
Bodies go out by the cheapest route (the shared responder, :mod:`pythonhosted.web.objects`):
objects up to ``cache_object_max_bytes`` from memory, small ranges of local files by one
``pread``, larger local files as a paced ``pread`` stream that keeps a slow client's
connection small, the rest streamed from the store.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import logging
import mimetypes
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

import brotli

from pythonhosted.boundedlog import BoundedLog, failure_log
from pythonhosted.coalesce import Coalescer
from pythonhosted.eventlog import EventLog
from pythonhosted.files.damage import recorded_size
from pythonhosted.files.metrics import EdgeMetrics
from pythonhosted.logline import served_download_lines, served_line
from pythonhosted.objectkeys import path_of
from pythonhosted.storage import (
    Backend,
    Fallback,
    NotFound,
    ObjectInfo,
    StorageError,
    Store,
    StorePair,
    StoreUnavailable,
)
from pythonhosted.web.bodycache import BodyCache, Pieces
from pythonhosted.web.clientfacts import ClientFacts
from pythonhosted.web.h1.quick import QuickAnswer, header_lines
from pythonhosted.web.http import Unsatisfiable, http_datetime, parse_range, preferred_encoding
from pythonhosted.web.objects import ObjectResponder, StoredObject
from pythonhosted.web.purges import PurgeJournal
from pythonhosted.web.request import Request
from pythonhosted.web.responses import send_response
from pythonhosted.web.security import HSTS, NO_CROSS_DOMAIN, SECURITY
from pythonhosted.web.shell import CountingSend, Service
from pythonhosted.web.streams import slots_of
from pythonhosted.web.types import ASGIApp, Headers, Receive, Scope, Send

log = logging.getLogger(__name__)

HASHED = re.compile(r"^/packages/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}/[^/]+$")
DISTRIBUTION_SUFFIXES = (
    ".whl",
    ".tar.gz",
    ".zip",
    ".egg",
    ".exe",
    ".msi",
    ".rpm",
    ".dmg",
    ".tar.bz2",
    ".tgz",
)
MAX_PATH = 2048
# Where the body cache keeps an object's compressed copies: spans no byte range has (a range
# never starts at -1), so a purge of the object drops them with its body and ranges.
ENCODED_SPANS = {b"br": (-1, -2), b"gzip": (-1, -3)}
ALLOW = b"GET, HEAD, OPTIONS"
TEXT = b"text/plain; charset=UTF-8"
SECURITY_TLS: Headers = [*SECURITY, HSTS]
METHODS = ("GET", "HEAD", "OPTIONS", "PURGE")  # PURGE is taken but not advertised in Allow
# A request with any of these goes the ASGI way (validators, a forced backend).
NOT_QUICK = frozenset({b"if-none-match", b"if-modified-since", b"if-range", b"x-force-backend"})
# The largest byte range answered quickly: installers' reads of a wheel's zip directory are
# a few KB to tens of KB; a larger range is cut from its body, and paced (web/objects.py).
QUICK_RANGE_MAX = 64 * 1024
RANGE_HEADS = 8
PLAIN: Scope = {"scheme": "http"}  # the scope a quick answer's client facts see

CORS_GET: Headers = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, OPTIONS"),
    (b"access-control-allow-headers", b"Range"),
    (b"access-control-expose-headers", b"Content-Length, Content-Range, Accept-Ranges"),
]
CORS_PREFLIGHT: Headers = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
    (b"access-control-allow-headers", b"Range, Accept-Encoding"),
    (b"access-control-max-age", b"86400"),
]
METADATA_HEADERS = {
    "project": b"x-pypi-file-project",
    "version": b"x-pypi-file-version",
    "package-type": b"x-pypi-file-package-type",
    "python-version": b"x-pypi-file-python-version",
}


@dataclass(frozen=True, slots=True)
class EdgeOptions:
    admin_secret: str | None = None
    purge_secret: str | None = None
    require_tls: bool = False
    trust_proxy_headers: bool = False
    country_header: str | None = None
    cache_entries: int = 20_000  # about 3.2 KB each (headers built once per object)
    cache_max_bytes: int = 128 * 2**20
    cache_object_max_bytes: int = 16 * 2**20


class EdgeObject(StoredObject):
    """An object located once; immutable files never need to be looked up again."""

    __slots__ = ("metadata", "range_heads", "served_whole")

    def __init__(self, info: ObjectInfo, store: Store) -> None:
        super().__init__(
            info.key,
            info.size,
            info.etag,
            info.last_modified,
            _object_headers(info),
            store,
            info.local_path,
        )
        self.metadata = info.metadata  # project, version, ... for the download line
        self.served_whole = served_line(200, info.size, False, 0)  # most downloads' facts
        # Heads of the quick 206s and their spans, by security list and Range header: the
        # installers ask the same tail again and again (at most RANGE_HEADS kept).
        self.range_heads: dict[tuple[int, bytes], tuple[bytes, int, int]] = {}


class FilesEdge:
    """ASGI app; ``legacy`` answers non-hashed /packages/ paths (conveyor), else 404.

    ``purges``: the journal this worker shares with the other workers of its instance, so a
    PURGE that reaches one of them empties every one's cache (:mod:`.journal`).
    """

    def __init__(
        self,
        stores: StorePair,
        download_log: EventLog | None = None,
        options: EdgeOptions | None = None,
        legacy: ASGIApp | None = None,
        metrics: EdgeMetrics | None = None,
        purges: PurgeJournal | None = None,
    ) -> None:
        self.metrics = metrics or EdgeMetrics()
        self.stores = stores
        stores.on_fallback = self._count_fallback
        self._failures = failure_log(log, "files edge store")
        self._damage = BoundedLog(
            log, "archive fallback for %d more damaged copies in %g s (not logged): %s", "copies"
        )
        self.log = download_log
        self.options = options or EdgeOptions()
        self.legacy = legacy
        self.purges = purges
        self.client = ClientFacts(self.options.trust_proxy_headers, self.options.country_header)
        # Located objects, oldest out first: a plain OrderedDict, not cachetools, because it is
        # read on every request (0.35 against 1.1 us a lookup; see web/bodycache.py).
        self._cache: OrderedDict[str, EdgeObject] = OrderedDict()
        self._looking_up: Coalescer[str, EdgeObject] = Coalescer()
        bodies = BodyCache(self.options.cache_max_bytes, self.options.cache_object_max_bytes)
        self.bodies = bodies
        self._encoding: Coalescer[tuple[str, bytes], bytes] = Coalescer()
        self.responder = ObjectResponder(
            bodies, cors=CORS_GET, error_headers=[NO_CROSS_DOMAIN], streams=slots_of("files")
        )
        self.metrics.cache_entries.labels("objects").set_function(lambda: len(self._cache))
        self.metrics.cache_entries.labels("bodies").set_function(lambda: bodies.entries)
        self.metrics.cache_bytes.set_function(lambda: bodies.size)
        self.metrics.primary_skipped.set_function(lambda: stores.breaker.is_open)

    def _count_fallback(self, fallback: Fallback) -> None:
        self.metrics.fallbacks.labels(fallback.reason, fallback.outcome).inc()

    # -- requests --------------------------------------------------------------------------

    def quick(
        self,
        method: str,
        target: bytes,
        headers: dict[bytes, bytes],
        client: tuple[str, int] | None,
    ) -> QuickAnswer | None:
        """The hot path, answered inside the connection (:mod:`pythonhosted.web.h1`): a GET
        or HEAD of an object already located, whose bytes (for a GET: the whole body, or a
        range of up to ``QUICK_RANGE_MAX`` bytes) are in memory, with no validator or forced
        backend; None for every other request, which :meth:`handle` answers over ASGI. The
        same answer, headers and download line as :meth:`handle` gives; a whole body's head
        comes built once per object."""
        if len(target) > MAX_PATH or not headers.keys().isdisjoint(NOT_QUICK):
            return None
        decoded = path_of(target)
        if decoded is None or not HASHED.match(decoded) or decoded.endswith(".metadata"):
            return None  # .metadata: its encodings are negotiated
        tls = self.client.is_tls(PLAIN, headers)
        if self.options.require_tls and not tls:
            return None
        key = decoded[1:]
        self._take_purges()
        entry = self._cache.get(key)
        if entry is None:
            return None
        security = SECURITY_TLS if tls else SECURITY
        whole = entry.whole_head(security, CORS_GET)  # None: a header that cannot go out
        asked = headers.get(b"range")
        if whole is None or (asked is not None and method == "HEAD"):
            return None
        start = 0
        if asked is not None:
            ranged = self._quick_range(entry, key, asked, security)
            if ranged is None:
                return None
            answer, start = ranged
        elif method == "GET":
            body = self.bodies.get(key)
            if type(body) is not bytes:
                return None
            answer = QuickAnswer(whole, body)
        else:
            answer = QuickAnswer(whole, b"")
        self._count_sidecar(key)
        if method == "GET" and self.log is not None and key.endswith(DISTRIBUTION_SUFFIXES):
            self.metrics.downloads.count += 1
            served = (
                entry.served_whole
                if asked is None
                else served_line(206, len(answer.body), True, start)
            )
            self._append_download(entry, served, {"client": client}, headers, target)
        return answer

    def _quick_range(
        self, entry: EdgeObject, key: str, asked: bytes, security: Headers
    ) -> tuple[QuickAnswer, int] | None:
        """A 206 for the range ``asked`` names and where it starts, when it is one satisfiable
        range of at most ``QUICK_RANGE_MAX`` bytes in memory; else None. Its head is kept on
        the object by the header's text and its bytes in the body cache (charged to its
        budget): a repeated tail read costs two lookups."""
        heads = entry.range_heads
        known = heads.get((id(security), asked))
        if known is None:
            span = _quick_span(asked, entry.size)
            if span is None:
                return None
            start, end = span
            lines = header_lines(
                (
                    *security,
                    *entry.headers,
                    *CORS_GET,
                    (b"content-range", b"bytes %d-%d/%d" % (start, end - 1, entry.size)),
                    (b"content-length", b"%d" % (end - start)),
                )
            )
            if lines is None:  # as for the whole body (checked before): over ASGI, a 500
                return None
            if len(heads) >= RANGE_HEADS:
                heads.clear()
            head = b"HTTP/1.1 206 Partial Content\r\n" + lines
            known = heads[id(security), asked] = (head, start, end)
        head, start, end = known
        piece = self.bodies.get(key, start, end)  # cut before, or read from disk before
        if type(piece) is not bytes:
            body = self.bodies.get(key)
            if body is None:
                return None
            piece = body.slice(start, end) if isinstance(body, Pieces) else body[start:end]
            self.bodies.put(key, piece, start, end)
        return QuickAnswer(head, piece, 206), start

    async def handle(self, request: Request, receive: Receive, send: Send) -> None:
        """Everything but the shell's paths (health, metrics) and methods (see ``as_service``)."""
        security = SECURITY_TLS if request.tls else SECURITY  # CORS answers go without NCDP
        if self.options.require_tls and not request.tls:
            await Service.text(send, request, 403, "SSL is required")
            return
        method = request.method
        if len(request.raw_path) > MAX_PATH:
            await Service.text(send, request, 414, "URI too long")
            return
        decoded = path_of(request.raw_path)
        if decoded is None:
            await Service.text(send, request, 400, "Bad request path")
            return
        if not HASHED.match(decoded):
            if decoded.startswith("/packages/") and self.legacy is not None and method != "PURGE":
                scope = request.scope
                if request.tls and scope.get("scheme") != "https":
                    scope = {**scope, "scheme": "https"}  # the edge trusts its proxy; say so
                await self.legacy(scope, receive, send)
                return
            status, reason = (405, "Method not allowed") if method == "OPTIONS" else (404, "")
            extra = [(b"allow", ALLOW)] if status == 405 else []
            await Service.text(send, request, status, reason or "Not Found", extra)
            return
        key = decoded[1:]
        if method == "OPTIONS":
            await self._options(request, send, security)
        elif method == "PURGE":
            await self._purge(request, key, send)
        else:
            await self._serve(request, key, send, security)

    async def _options(self, request: Request, send: Send, security: Headers) -> None:
        if b"origin" in request.headers and b"access-control-request-method" in request.headers:
            await send_response(send, 204, headers=security + CORS_PREFLIGHT)
        else:
            await Service.text(send, request, 405, "Method not allowed", [(b"allow", ALLOW)])

    async def _purge(self, request: Request, key: str, send: Send) -> None:
        secret = self.options.purge_secret
        scheme, _, token = (request.header(b"authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            challenge = [(b"www-authenticate", b'Bearer realm="purge"')]
            await Service.text(send, request, 401, "Purge needs Authorization: Bearer", challenge)
            return
        if secret is None or not hmac.compare_digest(token.strip().encode(), secret.encode()):
            await Service.text(send, request, 403, "Purge credential refused")
            return
        self._forget(key)
        if self.purges is not None:
            try:
                self.purges.publish(key)
            except OSError as exc:  # the journal's disk is full: the other workers would not know
                log.warning("purge of %s not shared with the other workers: %s", key, exc.strerror)
                reason = f"Purge not recorded for every worker ({exc.strerror}); try again"
                await Service.text(send, request, 503, reason, [(b"retry-after", b"1")])
                return
        self.metrics.purges.inc()
        log.info("purged %s", key)
        await Service.text(send, request, 200, "Purged")

    def _forced_backend(self, request: Request) -> Backend | None:
        secret = self.options.admin_secret
        given = request.headers.get(b"x-pypi-admin")
        force = request.headers.get(b"x-force-backend")
        if secret is None or given is None or force not in (b"PRIMARY", b"ARCHIVE"):
            return None
        if not hmac.compare_digest(given, secret.encode()):
            return None
        return Backend.PRIMARY if force == b"PRIMARY" else Backend.ARCHIVE

    def _take_purges(self) -> None:
        """Forget what another worker purged (usually nothing: one memory read)."""
        if self.purges is not None:
            purged = self.purges.news()
            if purged is None:  # the journal started afresh past what this worker had read
                self._cache.clear()
                self.bodies.clear()
            else:
                for purged_key in purged:
                    self._forget(purged_key)

    async def _locate(self, key: str, force: Backend | None) -> EdgeObject:
        self._take_purges()
        if force is not None:
            info, store, _ = await self.stores.info(key, force)
            return EdgeObject(info, store)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        return await self._looking_up.run(key, lambda: self._look_up(key))

    async def _look_up(self, key: str) -> EdgeObject:
        """One lookup, cached before the requests sharing it resume: a request arriving
        between the lookup's end and their resuming found neither the entry nor a lookup in
        flight, and looked up again (a cold burst of 30 made two HEADs, at load 4)."""
        info, store, backend = await self.stores.info(key)
        if backend is Backend.PRIMARY and key.endswith(DISTRIBUTION_SUFFIXES):
            expected = await recorded_size(store, key)
            if expected is not None and expected != info.size:
                info, store = await self._instead_of_damaged(info, expected)
        entry = EdgeObject(info, store)
        self._cache[key] = entry
        if len(self._cache) > self.options.cache_entries:
            self._cache.popitem(last=False)
        return entry

    async def _instead_of_damaged(
        self, damaged: ObjectInfo, expected: int
    ) -> tuple[ObjectInfo, Store]:
        """The archive's copy of a file whose primary copy is not as long as its catalog
        record says (:mod:`.damage`); StoreUnavailable (a 503) when it has no good copy."""
        key, archive = damaged.key, self.stores.archive
        outcome, found = "not configured", None
        if archive is not None:
            try:
                found = await archive.info(key)
                outcome = "served" if found.size == expected else "damaged"
            except NotFound:
                outcome = "missing"
            except StorageError:
                outcome = "unavailable"
            self._count_fallback(Fallback("damaged", outcome))
        self._damage.note(
            logging.WARNING,
            f"damaged-{outcome}",
            "archive fallback for %s: primary copy is damaged: %d bytes, its catalog record "
            "says %d; archive %s",
            key,
            damaged.size,
            expected,
            outcome,
        )
        if archive is None or found is None or outcome != "served":
            raise StoreUnavailable(f"primary copy of {key} is damaged; archive: {outcome}")
        return found, archive

    async def _serve(self, request: Request, key: str, send: Send, security: Headers) -> None:
        head = request.method == "HEAD"
        force = self._forced_backend(request)
        try:
            entry = await self._locate(key, force)
        except NotFound:
            await Service.text(send, request, 404, "Not Found")
            return
        except StoreUnavailable as exc:
            self._failures.note(
                logging.WARNING, "unavailable", "no store could serve %s: %s", key, exc
            )
            await Service.text(send, request, 503, "Storage unavailable")
            return
        if self.responder.not_modified(request, entry):
            await self.responder.send_not_modified(send, entry, security)
            return
        if key.endswith(".metadata"):
            self.metrics.sidecars.labels("metadata").inc()
            encoding = preferred_encoding(request.header(b"accept-encoding"), ("br", "gzip"))
            # Compressed only when the body cache can keep the result: one that cannot was
            # read whole and compressed again for each request (a 40 MB sidecar: 2.1 s of CPU
            # with gzip, 0.5 s with brotli, and +95 MB of peak memory, where sending it as
            # stored takes 0.05 s); larger ones go out as they are stored.
            compressible = self.bodies.fits(entry.size) and b"range" not in request.headers
            if (
                encoding is not None
                and compressible
                and await self._send_encoded(
                    entry, encoding.encode(), security + entry.headers, send, head
                )
            ):
                return
        else:
            self._count_sidecar(key)
        logged = self.log is not None and not head and key.endswith(DISTRIBUTION_SUFFIXES)
        failure = await self._respond(request, entry, security, send, force, logged)
        if failure is not None and self._archive_may_answer(entry, failure, send, force):
            # The primary found the object and then failed to read it (a 500 after the
            # lookup) before a byte went out: the archive answers, as it would have for the
            # lookup. Its copy has its own ETag, so the conditions are checked against it.
            try:
                from_archive = await self._locate(key, Backend.ARCHIVE)
            except StorageError as exc:  # the primary's failure is the one reported
                outcome = "missing" if isinstance(exc, NotFound) else "unavailable"
            else:
                failure = await self._respond(
                    request, from_archive, security, send, force, logged, validated=False
                )
                outcome = "served" if failure is None else "unavailable"
            self._count_fallback(Fallback("unavailable", outcome))
        if failure is not None:
            await self._read_failed(request, key, failure, send)

    async def _respond(
        self,
        request: Request,
        entry: EdgeObject,
        security: Headers,
        send: Send,
        force: Backend | None,
        logged: bool,
        *,
        validated: bool = True,
    ) -> StorageError | None:
        """Send ``entry``; the store's failure, if it failed (the caller answers for it)."""
        try:
            await self.responder.respond(
                request, send, entry, security, validated=validated, use_cache=force is None
            )
        except OSError as exc:  # a local file's pread
            return _os_error(exc)
        except StorageError as exc:
            return exc
        finally:  # a download that started is logged however it ended
            if logged:
                self._log_download(request, entry, send)
        return None

    def _archive_may_answer(
        self, entry: EdgeObject, failure: StorageError, send: Send, force: Backend | None
    ) -> bool:
        """Whether a failed read of ``entry`` can still go to the archive: it came from the
        primary, failed before the response began, for a reason other than absence."""
        sent: CountingSend = send  # type: ignore[assignment]  # the shell's (_log_download)
        return (
            force is None
            and self.stores.archive is not None
            and entry.store is self.stores.primary
            and not sent.started
            and not isinstance(failure, NotFound)
        )

    def _count_sidecar(self, key: str) -> None:
        """Requests for signatures and other files beside the distributions (``.metadata``
        is counted where its encoding is chosen)."""
        if key.endswith(".asc"):
            self.metrics.sidecars.labels("asc").inc()
        elif not key.endswith(DISTRIBUTION_SUFFIXES):
            self.metrics.sidecars.labels("other").inc()

    async def _read_failed(self, request: Request, key: str, exc: StorageError, send: Send) -> None:
        if isinstance(exc, NotFound):
            self._forget(key)
            await Service.text(send, request, 404, "Not Found")
        else:
            self._failures.note(
                logging.WARNING, "read_failed", "read of %s failed after lookup: %s", key, exc
            )
            await Service.text(send, request, 503, "Storage unavailable")

    def _forget(self, key: str) -> None:
        self._cache.pop(key, None)
        self.responder.forget(key)

    async def _send_encoded(
        self, entry: EdgeObject, encoding: bytes, base: Headers, send: Send, head: bool
    ) -> bool:
        """Send the compressed form; False (nothing sent) when it is not made yet and the
        bodies being read into memory already fill the cache's budget: the object then goes
        out as stored, as the responder's own bodies do past that budget."""
        cached = self.bodies.get(entry.key, *ENCODED_SPANS[encoding])
        body = cached if isinstance(cached, bytes) else None
        if body is None:
            making = (entry.key, encoding)
            # the raw bytes and the compressed ones: twice the size at most, held at once
            if not self._encoding.busy(making) and not self.responder.start_reading(
                self.bodies, 2 * entry.size
            ):
                return False
            body = await self._encoding.run(making, lambda: self._encode(entry, encoding))
        headers = [h for h in base if h[0] != b"etag"] + CORS_GET
        etag = entry.etag
        if etag:
            headers.append((b"etag", f"W/{etag.removeprefix('W/')}".encode()))
        headers.append((b"content-encoding", encoding))
        await send_response(send, 200, body, content_type=None, headers=headers, head=head)
        return True

    async def _encode(self, entry: EdgeObject, encoding: bytes) -> bytes:
        """The object compressed, kept in the body cache's byte budget: a burst of requests
        for one large ``.metadata`` used to read and compress it once per request (500 at once
        for a 930 KB one: 25 s and +340 MB), and each object kept its compressed copies
        outside any budget. Counted against the bodies being read in (``start_reading``)."""
        try:
            raw = await entry.store.get_bytes(entry.key)
            body = await asyncio.to_thread(_compress, raw, encoding)
        finally:
            self.responder.done_reading(2 * entry.size)
        self.bodies.put(entry.key, body, *ENCODED_SPANS[encoding])
        return body

    def _log_download(self, request: Request, entry: EdgeObject, send: Send) -> None:
        """The served and download lines of a response that sent a body (200 or 206), once it
        is done: the service shell's :class:`~pythonhosted.web.shell.CountingSend` (the
        edge runs in it) counted the body bytes and kept the status. Nothing for a response
        whose head never went out (a read that failed first: the caller answers 404/503).

        The bytes are those the edge handed to the HTTP server: fewer than the response's
        length when the store failed mid-body. A client that leaves early is not seen: the
        server takes a body whatever the client does (granian took a 40 MB body in about 60 ms
        while the client had read 300 KB; ours queues what the socket does not take) and
        reports the disconnect only after, so from inside the app no count of what the
        client received exists."""
        assert self.log is not None
        sent: CountingSend = send  # type: ignore[assignment]
        status = sent.status
        if not sent.started or (status != 200 and status != 206):
            return
        self.metrics.downloads.count += 1
        headers = request.headers
        asked = headers.get(b"range")
        sent_bytes = sent.body_bytes
        if status == 200 and asked is None and sent_bytes == entry.size:
            served = entry.served_whole
        else:
            start = 0
            if status == 206:  # the range it answered; a 206 had a satisfiable one
                span = parse_range(asked.decode("latin-1") if asked else None, entry.size)
                start = span[0] if span is not None else 0
            served = served_line(status, sent_bytes, asked is not None, start)
        self._append_download(entry, served, request.scope, headers, request.raw_path)

    def _append_download(
        self,
        entry: EdgeObject,
        served: str,
        scope: Scope,
        headers: dict[bytes, bytes],
        raw_path: bytes,
    ) -> None:
        assert self.log is not None
        metadata = entry.metadata
        tls_protocol, tls_cipher = self.client.tls(headers)
        agent = headers.get(b"user-agent")
        self.log.append(
            served_download_lines(
                served,
                timestamp=time.time(),
                country=self.client.country(scope, headers),
                url=raw_path.decode("latin-1"),
                tls_protocol=tls_protocol,
                tls_cipher=tls_cipher,
                project=metadata.get("project"),
                version=metadata.get("version"),
                package_type=metadata.get("package-type"),
                user_agent=agent.decode("latin-1") if agent is not None else None,
            )
        )


def _quick_span(asked: bytes, size: int) -> tuple[int, int] | None:
    """The one satisfiable range of up to ``QUICK_RANGE_MAX`` bytes that ``asked`` names, else
    None (the whole, a 416, a large range: the ASGI way)."""
    try:
        span = parse_range(asked.decode("latin-1"), size)
    except Unsatisfiable:
        return None
    if span is None or span[1] - span[0] > QUICK_RANGE_MAX:
        return None
    return span


def _compress(data: bytes, encoding: bytes) -> bytes:
    if encoding == b"br":
        return bytes(brotli.compress(data, quality=5))
    return gzip.compress(data, compresslevel=6, mtime=0)


def _object_headers(info: ObjectInfo) -> Headers:
    content_type = info.content_type or _guess_type(info.key)
    headers: Headers = [
        (b"cache-control", b"max-age=365000000, immutable, public"),
        (b"accept-ranges", b"bytes"),
        (b"content-type", content_type.encode("latin-1")),
        (b"last-modified", http_datetime(info.last_modified).encode()),
    ]
    if info.etag:
        headers.append((b"etag", info.etag.encode("latin-1")))
    if info.key.endswith(".metadata"):
        headers.append((b"vary", b"Accept-Encoding"))
    for name, header in METADATA_HEADERS.items():
        value = info.metadata.get(name)
        if value:
            headers.append((header, value.encode("utf-8")))
    return headers


def _guess_type(key: str) -> str:
    if key.endswith(".whl"):
        return "application/zip"
    if key.endswith(".metadata"):
        return "text/plain; charset=utf-8"
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def _os_error(exc: OSError) -> StorageError:
    return NotFound(str(exc)) if isinstance(exc, FileNotFoundError) else StoreUnavailable(str(exc))
