"""The cache in front of the proxy (spec rules 22-25): hits, coalesced misses, revalidation,
stale-if-error.

Only whole-image GETs go through it (a Range request, or a HEAD with nothing cached, goes
straight upstream). The proxy has already checked the signature and the first hop's URL before
the cache is asked, and an entry that came through redirects has its final URL checked again on
every hit, so the cache never serves what camo would now refuse. For one key at most one
upstream exchange runs at a time: requests arriving meanwhile wait for it and are served from
what it stored (or share its refusal), so a burst of misses costs upstream one request.

An exchange goes on after its own client hung up only while requests waiting for it are
still there and what it reads may still be stored for them; otherwise it stops at once and
stores nothing (docs/camo.md, "Clients that leave").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pythonhosted.boundedlog import BoundedLog
from pythonhosted.camo.cache.disk import DiskWriter, NoRoom
from pythonhosted.camo.cache.entry import DamagedEntry, Entry, cache_key
from pythonhosted.camo.cache.freshness import Freshness, freshness
from pythonhosted.camo.cache.store import CacheStore, Hit
from pythonhosted.camo.errors import Refused
from pythonhosted.camo.http1 import BodyError
from pythonhosted.camo.metrics import CamoMetrics
from pythonhosted.camo.relay import Relay
from pythonhosted.web.departure import Presence
from pythonhosted.web.http import parse_http_date
from pythonhosted.web.purges import PurgeJournal
from pythonhosted.web.types import Headers

log = logging.getLogger(__name__)

#: refusals that mean "upstream is failing", when a stale entry may stand in (never a policy
#: refusal: the cache must not change what camo refuses)
UPSTREAM_FAILURES = frozenset({"upstream_5xx", "upstream", "connect", "dns", "timeout"})
CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since"})
VALIDATORS = frozenset({b"cache-control", b"etag", b"expires", b"last-modified"})
_REVALIDATORS = ((b"etag", "If-None-Match"), (b"last-modified", "If-Modified-Since"))
#: how long a start waits for the disk tier's index before serving (uncached meanwhile): a
#: million entries take 10-30 s to index on a loaded machine, and camo must not be down then
INDEX_WAIT = 2.0


@dataclass(frozen=True)
class CachePolicy:
    default_ttl: float
    max_ttl: float
    stale_if_error: float
    object_max_bytes: int  # bigger bodies are never cached


@dataclass(frozen=True)
class NotModified:
    """Upstream confirmed a stale entry (304); its raw headers carry the new freshness."""

    raw_headers: list[tuple[bytes, bytes]]


#: (upstream request headers, the fill for a cacheable response or None, revalidating?) ->
#: the status relayed, or NotModified when revalidating and upstream answered 304
Fetch = Callable[[dict[str, str], "Fill | None", bool], Awaitable["int | NotModified"]]


class Fill:
    """Stores a response while the proxy relays it, if upstream lets it be cached."""

    def __init__(self, cache: ImageCache, key: str, url: str, credentials: bool) -> None:
        self._cache = cache
        self._key = key
        self._url = url
        self._credentials = credentials
        self._writer: DiskWriter | None = None
        self._chunks: list[bytes] | None = None
        self._entry: Entry | None = None
        self._freshness = Freshness(False)
        self._started = False
        self.stored: Entry | None = None

    @property
    def may_store(self) -> bool:
        """Whether what is read may still be stored: until the response's head is in, then
        while the body is being written."""
        return not self._started or self._writer is not None

    def start(
        self,
        status: int,
        relayed: Headers,
        raw_headers: list[tuple[bytes, bytes]],
        final_url: str,
        length: int | None,
    ) -> None:
        """The response passed camo's checks and is about to be relayed."""
        self._started = True
        policy = self._cache.policy
        if status != 200 or (length is not None and length > policy.object_max_bytes):
            return
        self._freshness = freshness(
            raw_headers,
            default_ttl=policy.default_ttl,
            max_ttl=policy.max_ttl,
            credentials=self._credentials,
        )
        if not self._freshness.storable:
            return
        kept = tuple((name, value) for name, value in relayed if name != b"content-length")
        self._entry = Entry(self._url, final_url, kept, 0, 0, time.time(), 0.0, 0.0, True)
        try:
            self._writer = self._cache.store.writer(self._key)
        except OSError as exc:
            self._failed(exc)
            return
        small = length is not None and length <= self._cache.store.memory_object_bytes
        self._chunks = [] if small else None

    def write(self, chunk: bytes) -> None:
        if self._writer is None or not chunk:
            return
        if self._writer.length + len(chunk) > self._cache.policy.object_max_bytes:
            self.abort()
            return
        try:
            self._writer.write(chunk)
        except NoRoom:  # the other bodies being stored hold the budget: relayed, not kept
            self.abort()
            return
        except OSError as exc:
            self._failed(exc)
            return
        if self._chunks is not None:
            self._chunks.append(chunk)

    def _failed(self, exc: OSError) -> None:
        """The disk refused the entry (full, out of descriptors): the image is relayed all the
        same, only not kept. The cache is an economy; it never costs a client its image."""
        self.abort()
        self._cache.metrics.cache_write_failures.inc()
        self._cache.disk_log.note(
            logging.WARNING, "write", "camo cache: not storing %s: %s", self._url[:200], exc
        )

    def finish(self) -> None:
        """The body ended at its framed end: put the entry in place."""
        if self._writer is None or self._entry is None:
            return
        fresh = self._freshness
        entry = self._entry
        entry.length, entry.crc = self._writer.length, self._writer.crc
        entry.lifetime, entry.age, entry.stale_allowed = (
            fresh.lifetime,
            fresh.age,
            fresh.stale_allowed,
        )
        try:
            self._writer.commit(entry)
        except NoRoom:
            self.abort()
            return
        except OSError as exc:
            self._failed(exc)
            return
        self._writer = None
        if self._chunks is not None:
            entry.body = b"".join(self._chunks)
        self._cache.store.stored(self._key, entry)
        self._cache.metrics.cache_stores.inc()
        self.stored = entry

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self._chunks = None


class _Exchange:
    """The one upstream exchange under way for a key, and the requests waiting for it."""

    __slots__ = ("done", "fill", "followers", "leader", "stale")

    def __init__(self, leader: Presence, fill: Fill | None) -> None:
        self.done: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self.done.add_done_callback(_retrieve)
        self.leader = leader  # the client of the request making the exchange
        self.fill = fill
        self.followers = 0  # requests waiting for it whose clients are still there
        self.stale = False  # upstream failed and the stale entry stands in (for them too)

    def wanted(self) -> bool:
        """Whether the exchange should go on once its own client has left: while others wait
        for it and what it reads may still be stored (or revalidated) for them."""
        return self.followers > 0 and (self.fill is None or self.fill.may_store)


@dataclass
class _Request:
    """One request the cache answers."""

    key: str
    url: str
    method: str
    client: list[tuple[bytes, bytes]]  # the client's request headers
    upstream_headers: dict[str, str]  # what camo would send upstream
    relay: Relay
    fetch: Fetch
    credentials: bool


class ImageCache:
    def __init__(
        self,
        store: CacheStore,
        policy: CachePolicy,
        metrics: CamoMetrics,
        purges: PurgeJournal | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.metrics = metrics
        # With several workers each holds its own tiers: a PURGE that reaches one reaches
        # the others through the journal they share (:mod:`pythonhosted.web.purges`).
        self.purges = purges
        self._deleting: set[asyncio.Task[None]] = set()
        self._pending: dict[str, _Exchange] = {}
        self._opening: asyncio.Task[None] | None = None
        self._wait_until = 0.0  # loop time: requests stop waiting for the index then
        # While an upstream is down every view of its images is served stale: bounded.
        summary = "camo cache: served stale %d more times in %g s (not logged one by one): %s"
        self._stale_log = BoundedLog(log, summary, "stale")
        summary = "camo cache: %d more disk failures in %g s (not logged one by one): %s"
        self.disk_log = BoundedLog(log, summary, "disk")

    async def available(self) -> bool:
        """Whether the cache can be used: its disk tier claimed a slot and indexed it (done
        once, in a thread, from start-up, which waits up to INDEX_WAIT for it; requests are
        served uncached while the index of a large cache is still being read, and always if
        every slot is taken by another process, which the log says)."""
        opening = self._opening
        if opening is not None and opening.done():
            return self.store.disk.opened  # every request once started: no loop lookup
        loop = asyncio.get_running_loop()
        if opening is None:
            opening = self._opening = asyncio.ensure_future(self._open())
            self._wait_until = loop.time() + INDEX_WAIT
        if not opening.done():
            left = self._wait_until - loop.time()
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await asyncio.shield(opening)
            if not opening.done():
                return False
        return self.store.disk.opened

    async def indexed(self) -> None:
        """Wait until the disk tier's index is read (a purge must not race the reading)."""
        await self.available()
        if self._opening is not None and not self._opening.done():
            await asyncio.shield(self._opening)

    async def _open(self) -> None:
        started = time.monotonic()
        try:
            await asyncio.to_thread(self.store.disk.open)
        except OSError as exc:
            log.error("camo cache off: %s", exc)
            return
        took = time.monotonic() - started
        if took >= INDEX_WAIT:
            disk = self.store.disk
            log.info("camo cache: indexed %d entries of %s in %.1f s", len(disk), disk.dir, took)

    async def serve(
        self,
        method: str,
        url: str,
        client: Iterable[tuple[bytes, bytes]],
        upstream_headers: dict[str, str],
        relay: Relay,
        fetch: Fetch,
        check_final: Callable[[str], None],
        credentials: bool,
    ) -> int:
        """Answer a whole-image GET or HEAD for ``url`` from the cache, or fill it."""
        request = _Request(
            cache_key(url), url, method, list(client), upstream_headers, relay, fetch, credentials
        )
        hit = await self._get(request.key)
        try:
            if hit is not None:
                if hit.entry.final_url != url:
                    check_final(hit.entry.final_url)  # redirects' target, against today's rules
                if hit.entry.fresh(time.time()):
                    self._count("hit")
                    return await self._send(hit, request, b"HIT")
            elif method == "HEAD":
                self._count("bypass")
                relay.tag = b"MISS"  # answered from upstream, not stored
                return await self._fetch_uncached(request)
            pending = self._pending.get(request.key)
            if pending is None:
                return await self._lead(request, hit)
            if hit is not None:
                hit.close()
                hit = None
            return await self._follow(request, pending)
        finally:
            if hit is not None:
                hit.close()

    def held_fresh(self, url: str, check_final: Callable[[str], None], now: float) -> Entry | None:
        """The entry for ``url`` if it is fresh at ``now`` and the memory tier holds its body:
        a hit that needs no wait (:meth:`pythonhosted.camo.proxy.Proxy.quick`), checked as
        :meth:`serve` checks one (Refused if its final URL would now be refused); None for
        anything else. The caller answers it and counts it (:meth:`counted_hit`)."""
        opening = self._opening
        if opening is None or not opening.done() or not self.store.disk.opened:
            return None
        self._catch_up()
        entry = self.store.memory.get(cache_key(url))
        if entry is None or entry.body is None or not entry.fresh(now):
            return None
        if entry.final_url != url:
            check_final(entry.final_url)
        return entry

    def counted_hit(self, entry: Entry, method: str) -> None:
        """A hit :meth:`held_fresh` gave, answered: counted as :meth:`_send` counts one."""
        self._count("hit")
        if method == "GET":
            self.metrics.counts.cache_bytes_served += entry.length

    async def _get(self, key: str) -> Hit | None:
        self._catch_up()
        try:
            return await self.store.get(key)
        except DamagedEntry:
            self.metrics.cache_damaged.inc()
            return None
        except OSError as exc:  # the entry's file would not open or read: answer as a miss
            self.disk_log.note(logging.WARNING, "read", "camo cache: cannot read %s: %s", key, exc)
            return None

    async def _lead(self, request: _Request, hit: Hit | None) -> int:
        """Make the one upstream exchange for the key; others wait for what it stores."""
        key, relay = request.key, request.relay
        fill = (
            Fill(self, key, request.url, request.credentials) if request.method == "GET" else None
        )
        exchange = self._pending[key] = _Exchange(relay.presence, fill)
        done = exchange.done
        relay.presence.keep = exchange.wanted
        headers = {
            name: value
            for name, value in request.upstream_headers.items()
            if name.lower().encode() not in CONDITIONAL
        }
        if hit is not None:
            for name, header in _REVALIDATORS:
                value = hit.entry.header(name)
                if value is not None:
                    headers[header] = value.decode("latin-1")
        try:
            relay.tag = b"MISS"
            outcome = await request.fetch(headers, fill, hit is not None)
            if isinstance(outcome, NotModified):
                assert hit is not None
                entry = self._confirmed(request, hit.entry, outcome)
                self._count("revalidated")
                done.set_result(entry)
                return await self._send(hit, request, b"REVALIDATED")
            if fill is not None:
                fill.finish()
            self._count("miss")
            done.set_result(fill.stored if fill is not None else None)
            return outcome
        except (Refused, TimeoutError, BodyError) as exc:
            if fill is not None:
                fill.abort()
            reason = exc.reason if isinstance(exc, Refused) else "timeout"
            if (
                hit is not None
                and not relay.started
                and reason in UPSTREAM_FAILURES | {"upstream_body"}
                and hit.entry.usable_stale(time.time(), self.policy.stale_if_error)
            ):
                self._stale_log.note(
                    logging.INFO,
                    reason,
                    "camo cache: %s served stale (%s)",
                    request.url[:200],
                    reason,
                )
                self._count("stale")
                exchange.stale = True
                done.set_result(hit.entry)
                return await self._send(hit, request, b"STALE")
            done.set_exception(exc if isinstance(exc, Refused) else _shared(exc))
            raise
        except BaseException:  # cut off mid-body, cancelled: waiting requests fetch for themselves
            if fill is not None:
                fill.abort()
            raise
        finally:
            relay.presence.keep = None
            del self._pending[key]
            if not done.done():
                done.set_result(None)

    def _confirmed(self, request: _Request, entry: Entry, answer: NotModified) -> Entry:
        """The entry after upstream's 304: fresh again, or dropped if now not storable."""
        fresh = freshness(
            _merged(entry.headers, answer.raw_headers),
            default_ttl=self.policy.default_ttl,
            max_ttl=self.policy.max_ttl,
            credentials=request.credentials,
        )
        if fresh.storable:
            return self.store.refresh(request.key, entry, fresh)
        self.store.drop(request.key)
        return entry

    async def _follow(self, request: _Request, exchange: _Exchange) -> int:
        """Wait for the exchange under way for the key, then answer from what it left; stop
        waiting if the client leaves (the exchange stops too if nobody else wants it)."""
        task = asyncio.current_task()
        assert task is not None
        request.relay.presence.watch(task)
        exchange.leader.hurry()  # its client's leaving now decides whether it goes on for us
        exchange.followers += 1
        try:
            # bounded: the exchange runs under its deadline
            entry = await asyncio.shield(exchange.done)
        finally:
            exchange.followers -= 1
            exchange.leader.reconsider()
        self._count("coalesced")
        if entry is not None:
            hit = await self._get(request.key)
            if hit is None and entry.body is not None:
                hit = Hit(entry)
            if hit is not None:
                tag = b"STALE" if exchange.stale else b"HIT"
                try:
                    return await self._send(hit, request, tag)
                finally:
                    hit.close()
        return await self._fetch_uncached(request)

    async def _fetch_uncached(self, request: _Request) -> int:
        outcome = await request.fetch(request.upstream_headers, None, False)
        assert not isinstance(outcome, NotModified)
        return outcome

    async def _send(self, hit: Hit, request: _Request, tag: bytes) -> int:
        entry, relay = hit.entry, request.relay
        relay.tag = None
        age = b"%d" % entry.current_age(time.time())
        extra: Headers = [(b"age", age), (b"x-camo-cache", tag)]
        if _not_modified(entry, request.client):
            relay.start(304, [*((n, v) for n, v in entry.headers if n in VALIDATORS), *extra])
            await relay.end()
            return 304
        relay.start(200, [*entry.headers, (b"content-length", b"%d" % entry.length), *extra])
        if request.method == "HEAD":
            await relay.end()
            return 200
        if entry.body is not None:
            await relay.body(entry.body, last=True)
        else:
            assert hit.file is not None
            # Read and sent only while the client is there. Once it has left, granian's send
            # drops what it is given without ever suspending; the file's pieces let the loop
            # turn, so the watch hears of it and cancels the task.
            task = asyncio.current_task()
            assert task is not None
            relay.presence.watch(task)
            await relay.file(hit.file.fileno(), entry.length)
        self.metrics.counts.cache_bytes_served += entry.length
        return 200

    def purge(self, url: str) -> bool:
        """Drop the entry for ``url`` here and tell the other workers to; whether this worker
        had one. OSError when the others could not be told (the journal's disk full)."""
        key = cache_key(url)
        dropped = self.store.drop(key)
        if self.purges is not None:
            self.purges.publish(key)
        self.metrics.cache_purges.inc()
        return dropped

    def _catch_up(self) -> None:
        """Drop what other workers purged since the last look (usually nothing: one read)."""
        if self.purges is None:
            return
        purged = self.purges.news()
        if purged is None:  # the journal started afresh past what this worker had read
            doomed = self.store.forget_all()
            task = asyncio.ensure_future(asyncio.to_thread(_delete, doomed))
            self._deleting.add(task)
            task.add_done_callback(self._deleting.discard)
            return
        for key in purged:
            self.store.drop(key)

    def _count(self, result: str) -> None:
        self.metrics.counts.by_cache_result[result] += 1


def _merged(
    stored: Iterable[tuple[bytes, bytes]], fresh: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The stored headers updated with a 304's (RFC 9111 section 4.3.4), for freshness."""
    updated = {name.lower() for name, _ in fresh}
    return [*((n, v) for n, v in stored if n not in updated), *fresh]


def _not_modified(entry: Entry, client: list[tuple[bytes, bytes]]) -> bool:
    """Whether the client's conditional headers match the entry (RFC 9110 section 13.2.2)."""
    given = {name.lower(): value for name, value in client if name.lower() in CONDITIONAL}
    tags = given.get(b"if-none-match")
    if tags is not None:
        etag = entry.header(b"etag")
        if etag is None:
            return False
        wanted = {tag.strip().removeprefix(b"W/") for tag in tags.split(b",")}
        return b"*" in wanted or etag.removeprefix(b"W/") in wanted
    since = given.get(b"if-modified-since")
    modified = entry.header(b"last-modified")
    if since is None or modified is None:
        return False
    last = parse_http_date(modified.decode("latin-1"))
    asked = parse_http_date(since.decode("latin-1"))
    return last is not None and asked is not None and last <= asked


def _shared(exc: BaseException) -> Refused:
    """What waiting requests answer when the exchange they waited for failed."""
    if isinstance(exc, TimeoutError):
        return Refused(504, "timeout", "upstream took too long")
    return Refused(502, "upstream_body", f"upstream body broke off: {exc}")


def _retrieve(done: asyncio.Future[Entry | None]) -> None:
    """Mark a failure as seen even when no request was waiting for it."""
    if not done.cancelled():
        done.exception()


def _delete(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
