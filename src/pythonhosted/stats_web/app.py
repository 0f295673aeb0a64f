"""The stats web as an ASGI app: JSON API, badges and pages over the warehouse's rollups.

:meth:`StatsWebApp.handle` answers the domain routes; the service shell it extends
(:mod:`pythonhosted.web.shell`) adds ``/_health``, ``/metrics``, counting and the rest.

Answers are computed in a worker thread of the app's own (:mod:`pythonhosted.threads`,
one pool per lane, :mod:`.lanes`: ``max_pending`` threads for quick answers, one more for
long ones, at most 32 each, so they never hold asyncio's default pool, which
the other services of ``serve`` need for their short I/O; once the warehouse is open, each
waits for one of the process's few turns at running Python, so a crowd of answers does not
starve the event loop of the GIL) on a connection from
:func:`pythonhosted.warehouse.access.reading` (the publish job's own connection when it runs
in this process, so nothing waits for a lock) and kept whole in a bounded cache keyed by
path, query and the last complete day, valid for one data version: a publish that changes
the data changes the version (:class:`~.data.DataVersion`), so no answer outlives it, unless
the publish changed nothing the answer read (no day up to the last it read, no latest
release it shows, and the watermark it shows is the current one: :mod:`.changes`), when it
is kept, ETag and all. Every
answer carries an ``ETag`` (a hash of its body: it changes only when the data or the day
changed), ``Cache-Control: public, max-age=N`` with N the seconds until the next publish is
expected (bounded by ``stats_web.max_age``), CORS ``*``, the security headers with a
Content-Security-Policy that allows only this origin's scripts, and, for clients a budget
applies to, the RateLimit headers (:mod:`.limits`).

A cached answer is served on the event loop without waiting on anything: two ``stat``
calls say the data version is unchanged (:class:`~.data.DataVersion`); when the files
changed, one shared read of the version in a worker thread decides whether the cached
answers still hold. The process freezes what it holds at start out of the garbage
collector's sight and the cache's entries are invisible to it, so a full collection on the
loop costs little however many answers are cached (:func:`_freeze_survivors`,
:mod:`.answers`).

Concurrent requests for one answer that is not cached share one computation: a publish
makes the cached answers it changed stale at once, and a popular badge asked by a thousand
clients in that moment would otherwise be computed a thousand times.

At most ``stats_web.max_pending`` answers of each lane are computed (or wait for a thread)
at once: a cold request past that is answered 503 at once (:mod:`.shedding`), so a crowd of
distinct cold questions cannot queue without bound. Long answers (pages, breakdowns,
compares) have their own threads and admission and run their Python in one of the process's
two turns only, so the quick ones (badges, pypistats' ``recent`` and ``overall``) never
queue behind them (:mod:`.lanes`). Cached answers, requests that join a computation
in flight, ``/_health`` and ``/metrics`` are never shed.

After each publish, the most downloaded projects' answers are computed in the background,
bounded and behind visitors' (:mod:`.prewarm`), so their first visitors find them cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import mimetypes
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from prometheus_client import Counter, Gauge

from pythonhosted.coalesce import Coalescer
from pythonhosted.config import Settings
from pythonhosted.errortext import first_line
from pythonhosted.pipeline import BATCH_TIMEOUTS, pipeline_urls, warehouse_url
from pythonhosted.stats_web import api, badges, changes, data, lanes, pages, settled, shedding
from pythonhosted.stats_web.answers import Answer, AnswerCache
from pythonhosted.stats_web.data import (
    ClickHouseDataVersion,
    Connection,
    DataVersion,
    Today,
    Version,
)
from pythonhosted.stats_web.limits import RateLimiter, worker_client_table
from pythonhosted.stats_web.params import BadParameter, NotFound, Params
from pythonhosted.stats_web.prewarm import Prewarm
from pythonhosted.stats_web.shedding import Admission, Busy
from pythonhosted.storage import open_store
from pythonhosted.threads import Workers, computing
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.base import WarehouseError
from pythonhosted.warehouse.clickhouse import stats as clickhouse_stats
from pythonhosted.warehouse.clickhouse.engines import ChdbEngine, Engine, chdb_path, open_engine
from pythonhosted.warehouse.coverage import coverage, latest_batch_hour, oldest_in_flight
from pythonhosted.warehouse.duck import duckdb_path
from pythonhosted.warehouse.stats import Filters, UnknownProject
from pythonhosted.web.departure import CLIENT_GONE, Departed, while_present
from pythonhosted.web.http import etag_matches
from pythonhosted.web.metrics import ServiceRegistry
from pythonhosted.web.request import Request
from pythonhosted.web.responses import send_response, send_text
from pythonhosted.web.security import SECURITY
from pythonhosted.web.shell import Service
from pythonhosted.web.types import Headers, Receive, Scope, Send

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def _assets() -> dict[str, tuple[bytes, bytes]]:
    """Every file of ``static/``: its body and type, read once.

    A request names one of these or nothing: its name never reaches the file system (a
    5,000-character name used to be stat'ed, and ENAMETOOLONG was a 500).
    """
    found: dict[str, tuple[bytes, bytes]] = {}
    for path in sorted(STATIC.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind.endswith("javascript"):
                kind += "; charset=utf-8"
            found[path.name] = (path.read_bytes(), kind.encode())
    return found


ASSETS = _assets()
CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
HEADERS: Headers = [*SECURITY, (b"content-security-policy", CSP)]
CORS: Headers = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"ETag, RateLimit, RateLimit-Policy, Retry-After"),
]
HTML = pages.HTML
SVG = badges.SVG
IN_FLIGHT_TTL = 30.0
MAX_THREADS = 32  # answers of a lane computing at once, whatever max_pending admits
Build = Callable[[Connection, api.Context], tuple[int, bytes, bytes]]


def _latest_batch_hour(con: Connection) -> datetime | None:
    if isinstance(con, duckdb.DuckDBPyConnection):
        return latest_batch_hour(con)
    return clickhouse_stats.latest_batch_hour(con)


def _error(status: int, message: str, **extra: Any) -> tuple[int, bytes, bytes]:
    return status, api.dumps({"error": message, **extra}), api.JSON


async def _freeze_survivors() -> None:
    """At start: what the process holds by now (modules, settings, the app) goes out of the
    collector's sight (``gc.freeze``).

    A full collection runs on the event loop and walks every object the collector tracks:
    the imports alone (DuckDB's, granian's, pydantic's, ...) made each one 9.5 ms of CPU,
    about 0.1 ms frozen (BENCHMARKS.md). The answer cache keeps its entries out of sight by
    itself (:mod:`.answers`). The badge drawer is imported first (:func:`.badges.prepare`).
    """
    badges.prepare()
    gc.collect()
    gc.freeze()


async def _unfreeze() -> None:
    """At stop: back in the collector's sight, so a process that goes on (tests, an
    embedding program) can still collect what it held."""
    gc.unfreeze()


class StatsWebApp(Service):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        options = settings.stats_web
        self.options = options
        self.url = options.warehouse or warehouse_url(settings)
        self.today = Today(options.today)
        self.duckdb = self.url.startswith("duckdb:")
        # DuckDB's file, or chDB's directory; None for a ClickHouse server.
        self.path: Path | None = None
        self.version: DataVersion | ClickHouseDataVersion = ClickHouseDataVersion()
        if self.duckdb:
            self.path = duckdb_path(self.url)
            self.version = DataVersion(self.path)
        elif self.url.startswith("chdb:"):
            self.path = chdb_path(self.url)
        self._server: Engine | None = None  # a ClickHouse server's client, kept
        self._server_lock = threading.Lock()
        self.cache = AnswerCache(options.cache_entries, options.cache_bytes)
        # a computation every client asking for it left is cancelled (see ``handle``)
        self._computing: Coalescer[tuple[object, ...], tuple[Answer, Version | None]] = Coalescer(
            abandon=True
        )
        self.admission = Admission(options.max_pending)  # computations at once, per lane
        # Its own threads (pythonhosted.threads): answers computing or waiting for a
        # writer never hold those the other services' short I/O needs. A pool per lane
        # (.lanes), so no long answer holds a thread a quick one waits for: one per admitted
        # computation, and for the long lane one more for a pre-warm's (one at a time), at
        # most as many as asyncio's default pool had: past that, answers queue for a thread,
        # and one every client left is never computed.
        self.long_workers = Workers("stats-web", min(options.max_pending + 1, MAX_THREADS))
        self.quick_workers = Workers("stats-web-quick", min(options.max_pending, MAX_THREADS))
        # The data version read has a thread of its own (one read at a time): every request,
        # cached answers' too, waits for it, so it must never queue behind answers (or a
        # pre-warm's) that wait up to read_wait for a warehouse writer.
        self.version_reader = Workers("stats-web-version", 1)
        self._refreshing: Coalescer[bool, bool] = Coalescer()  # one data version read
        self._listing: Coalescer[bool, datetime | None] = Coalescer()  # one store listing
        self.limiter = RateLimiter(
            options.rate_limit,
            options.rate_window,
            loopback=options.rate_limit_loopback,
            trust_proxy=options.trust_proxy_headers,
            table=worker_client_table(),
        )
        self.prewarm = Prewarm(self, options.prewarm_projects, options.prewarm_seconds)
        self._prewarming: asyncio.Task[None] | None = None
        registry = ServiceRegistry("stats_web")
        super().__init__(
            "stats_web",
            self._handle,
            registry,
            security=HEADERS,
            hooks=[
                (_freeze_survivors, _unfreeze),
                self.long_workers.hooks,
                self.quick_workers.hooks,
                self.version_reader.hooks,
                (self._start_prewarm, self._stop_prewarm),
            ],
            access_log=settings.http.access_log,
        )
        self.cache_hits = Counter(
            "stats_web_cache_hits", "Answers served from the cache.", registry=self.registry
        )
        self.computed = Counter(
            "stats_web_answers_computed",
            "Answers computed from the warehouse (concurrent requests for one share one).",
            registry=self.registry,
        )
        self.kept = Counter(
            "stats_web_answers_kept",
            "Cached answers carried over to a new data version that changed nothing they read.",
            registry=self.registry,
        )
        self.parts = settled.Parts(
            options.part_cache_bytes,
            Counter(
                "stats_web_parts_computed",
                "Settled parts of answers (over complete days) computed from the warehouse.",
                registry=self.registry,
            ),
            Counter(
                "stats_web_parts_reused",
                "Settled parts of answers taken from the part cache instead of computed.",
                registry=self.registry,
            ),
        )
        self.prewarmed = Counter(
            "stats_web_answers_prewarmed",
            "Answers computed in the background after a publish, before anyone asked.",
            registry=self.registry,
        )
        self.shed = Counter(
            "stats_web_shed",
            "Cold requests answered 503 at once: max_pending answers were being computed.",
            registry=self.registry,
        )
        computing = Gauge(
            "stats_web_answers_computing",
            "Answers being computed or waiting for a thread (at most max_pending a lane).",
            registry=self.registry,
        )
        computing.set_function(lambda: len(self.admission))
        self._in_flight: tuple[float, datetime | None] = (-IN_FLIGHT_TTL, None)
        self._latest_batch: tuple[int, datetime | None] = (-1, None)
        self._stores = pipeline_urls(settings)[:2]

    async def _start_prewarm(self) -> None:
        if self.prewarm.projects and self.cache.max_entries and self.cache.max_bytes:
            self._prewarming = asyncio.create_task(self.prewarm.run())

    async def _stop_prewarm(self) -> None:
        if self._prewarming is not None:
            self._prewarming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prewarming

    async def data_version(self) -> int | None:
        """The data version (:class:`.prewarm.Warmable`): on DuckDB re-read when the files
        changed; on ClickHouse the one requests read last."""
        stale = self.duckdb and self.version.stale()
        if stale and not await self._refreshing.run(True, self._refresh):
            return None
        return self.version.current.number

    async def top_projects(self, count: int) -> list[str]:
        def top() -> list[str]:
            with self._reading() as con, self._turn(long=True):
                end = self.today.last_complete_day()
                return [name for name, _ in data.top(con, 30, end, count, Filters())]

        return await self.long_workers.run(top)

    async def warm(self, path: str) -> bool:
        """Compute and cache the answer to ``path`` without parameters, as a visitor's
        (whose request for it meanwhile joins the computation), unless it is cached."""
        params = Params.parse(b"")
        key = (path, params.identity(), self.today.last_complete_day())
        if self._cached(key) is not None:
            return False
        build = self._route(path, params)
        await self._computing.run(key, lambda: self._kept(key, build, self.prewarmed))
        return True

    async def _handle(self, request: Request, receive: Receive, send: Send) -> None:
        await self.handle(request.scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> int:
        """The domain routes: API, badges, pages, static files. Returns the status sent."""
        method: str = scope["method"]
        path: str = scope["path"]
        if method == "OPTIONS":
            preflight = [
                (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
                (b"access-control-allow-headers", b"If-None-Match"),
                (b"access-control-max-age", b"86400"),
            ]
            await send_response(send, 204, headers=[*HEADERS, *CORS, *preflight])
            return 204
        if method not in ("GET", "HEAD"):
            allow = (b"allow", b"GET, HEAD, OPTIONS")
            await send_text(send, 405, "Method not allowed", headers=[*HEADERS, allow])
            return 405
        head = method == "HEAD"
        if path.startswith("/static/"):
            return await self._static(send, path.removeprefix("/static/"), head)
        headers: dict[bytes, bytes] = dict(scope["headers"])
        decision = self.limiter.check(self.limiter.client(scope, headers))
        limit_headers = decision.headers if decision else []
        if decision is not None and not decision.allowed:
            body = api.dumps({"error": f"too many requests; retry in {decision.retry_after}s"})
            await send_response(
                send, 429, body, content_type=api.JSON, headers=[*HEADERS, *CORS, *limit_headers]
            )
            return 429
        try:
            params = Params.parse(scope.get("query_string", b""))
            build = self._route(path, params)
        except BadParameter as exc:
            if path.startswith(("/api/", "/badge/")):
                answer = self._plain(*_error(400, str(exc), parameter=exc.name))
            else:
                answer = self._plain(400, pages.error("Bad request", str(exc)), HTML)
        except NotFound:
            if path.startswith(("/api/", "/badge/")):
                answer = self._plain(*_error(404, f"no such route: {path}"))
            else:
                answer = self._plain(404, pages.not_found(path), HTML)
        else:
            key = (path, params.identity(), self.today.last_complete_day())
            try:
                answer = await self._answer(key, build, receive)
            except Departed:
                await send_response(send, CLIENT_GONE, headers=HEADERS)  # for the counts
                return CLIENT_GONE
            except Busy:
                self.shed.inc()
                body, kind = shedding.answer(path, params)
                headers_out = [*HEADERS, *CORS, *limit_headers, *shedding.HEADERS]
                await send_response(
                    send, 503, body, content_type=kind, headers=headers_out, head=head
                )
                return 503
        return await self._send(send, answer, headers, limit_headers, head)

    def _route(self, path: str, params: Params) -> Build:
        """The builder of the answer to ``path`` (NotFound, BadParameter)."""
        if path.startswith("/api/"):
            if path == "/api/v1/coverage":
                return self._coverage(params)
            if path.startswith("/api/v1/projects/") and path.endswith("/shields"):
                name = path.removeprefix("/api/v1/projects/").removesuffix("/shields")
                return self._badge(name, params, shields=True)
            return self._api(path, params)
        if path.startswith("/badge/") and path.endswith(".svg"):
            return self._badge(path[len("/badge/") : -len(".svg")], params, shields=False)
        return self._page(path, params)

    def _api(self, path: str, params: Params) -> Build:
        def build(con: Connection, ctx: api.Context) -> tuple[int, bytes, bytes]:
            return 200, api.dumps(api.answer(con, path, params, ctx)), api.JSON

        return build

    def _badge(self, name: str, params: Params, *, shields: bool) -> Build:
        period, label, color, style = badges.options(params)

        def build(con: Connection, ctx: api.Context) -> tuple[int, bytes, bytes]:
            project = data.known(con, name)
            filters = Filters(mirrors=False, ci=True)
            if period == "total":
                count = data.total(con, project, ctx.end, filters)
            else:
                count = data.recent(con, project, ctx.end, filters)[period]
            text = badges.message(count, period)
            if shields:
                return 200, api.dumps(badges.shields(label, text, color)), api.JSON
            return 200, badges.svg(label, text, color, style), SVG

        return build

    def _page(self, path: str, params: Params) -> Build:
        render = pages.route(path, params)

        def build(con: Connection, ctx: api.Context) -> tuple[int, bytes, bytes]:
            try:
                return 200, render(con, ctx), HTML
            except UnknownProject as exc:
                return 404, pages.error("Unknown project", str(exc), exc.close), HTML

        return build

    def _coverage(self, params: Params) -> Build:
        days = params.number("days", 7, 1, 366)
        by = params.choice("by", ("hour", "day"), "hour")
        assert by is not None

        def build(con: Connection, ctx: api.Context) -> tuple[int, bytes, bytes]:
            changes.volatile()  # rows and the watermark: any publish moves them
            now = self.today.now()
            first = now.date() - timedelta(days=days - 1)
            source = self.path if self.duckdb and self.path else con
            assert not isinstance(source, duckdb.DuckDBPyConnection)
            found = coverage(
                source, first, now.date(), now=now, in_flight=self._in_flight[1], by=by
            )
            rows = [
                {
                    by: api.moment(m) if isinstance(m, datetime) else m.isoformat(),
                    "downloads": d,
                    "simple_requests": s,
                    "batches": b,
                    "status": status,
                }
                for m, d, s, b, status in found.rows
            ]
            document = {"by": by, "watermark": api.moment(found.watermark), "rows": rows}
            return 200, api.dumps(document), api.JSON

        return build

    async def _answer(self, key: tuple[object, ...], build: Build, receive: Receive) -> Answer:
        """The cached answer, else one computed while the client waits: a client that hangs
        up first stops waiting (Departed), and a computation every client asking for it left
        is cancelled, so a crowd that gave up does not hold up those that come after it.
        A new computation past ``max_pending`` in flight is not started (Busy); joining one
        in flight costs nothing and always goes ahead."""
        current = not self.version.stale() or await self._refreshing.run(True, self._refresh)
        if current:
            cached = self._cached(key)
            if cached is not None:
                self.cache_hits.inc()
                return cached
        with self.admission.admitted(key, long=lanes.is_long(str(key[0]))):
            computing = self._computing.run(key, lambda: self._kept(key, build, self.computed))
            answer, _ = await while_present(receive, computing)
        return answer

    def _cached(self, key: tuple[object, ...]) -> Answer | None:
        """The cached answer of the current data version: computed for it, or for an older
        one that changed nothing it read (counted as kept, once per version it moves to)."""
        kept = self.cache.kept
        version = self.version.current.number
        cached = self.cache.get(key, version, self.version.changes, self._watermark())
        if self.cache.kept != kept:
            self.kept.inc()
        return cached

    async def _refresh(self) -> bool:
        """Re-read the data version after the warehouse's files changed; whether it is
        known now (False: the warehouse cannot say, and the answer is computed, which tells
        the client why).

        Files change without the data changing (a checkpoint; a publish writes blocks before
        it commits; a ClickHouse version expires every second), and a change used to send
        every request to the warehouse until one answer was computed: the cached answers of
        an unchanged version are served again once it has been read. One read at a time,
        in a thread of its own; concurrent requests wait for it.

        When the version moved, its latest batch hour is read with it, and the stores are
        listed if the last listing is older than ``IN_FLIGHT_TTL``, so the cached answers
        that show the watermark are kept only while it is the current one (:mod:`.changes`).
        """
        before = self.version.current.number
        known = await self.version_reader.run(self._read_version)
        if known and self.version.current.number != before:
            await self._oldest_in_flight()
        return known

    def _read_version(self) -> bool:
        if not self._available():
            return False
        signature = self.version.signature()
        try:
            with self._reading() as con:
                version = self.version.refresh(con, signature)
                self._note_latest_batch(con, version.number)
        except (WarehouseError, duckdb.Error):
            return False
        return True

    async def _kept(
        self, key: tuple[object, ...], build: Build, counter: Counter
    ) -> tuple[Answer, Version | None]:
        """:meth:`_computed`, and put in the cache before whoever shares the computation
        hears of it: put by the caller once it resumed, a request that came in between (after
        the computation had ended, before the put) found neither and computed it again (a
        pre-warmed answer computed anew by its first visitor, on a loaded machine)."""
        answer, version = await self._computed(key, build, counter)
        if answer.status in (200, 404) and version is not None:
            self.cache.put(key, answer)
        return answer, version

    async def _computed(
        self, key: tuple[object, ...], build: Build, counter: Counter
    ) -> tuple[Answer, Version | None]:
        in_flight = await self._oldest_in_flight()
        long = lanes.is_long(str(key[0]))
        workers = self.long_workers if long else self.quick_workers
        # cancelled while queued for a thread (every client gone), it is never computed
        return await workers.run(self._compute, key, build, in_flight, long, counter)

    def _compute(
        self,
        key: tuple[object, ...],
        build: Build,
        in_flight: datetime | None,
        long: bool,
        counter: Counter,
    ) -> tuple[Answer, Version | None]:
        """In a worker thread: the answer (a ``long`` one's in a long turn), and the data
        version it belongs to (counted by ``counter``: a visitor's, or a pre-warm's)."""
        counter.inc()
        if not self._available():
            message = "no downloads have been published yet"
            path = str(key[0])
            if path.startswith(("/api/", "/badge/")):
                return self._plain(*_error(503, message)), None
            return self._plain(503, pages.error("No data yet", message.capitalize()), HTML), None
        signature = self.version.signature()
        try:
            with self._reading() as con, self._turn(long=long):
                stale = signature != self.version.signature_seen
                version = self.version.refresh(con, signature) if stale else self.version.current
                if self.version.outdated is not None:
                    raise WarehouseError(f"the warehouse {self.version.outdated}")
                self._note_latest_batch(con, version.number)
                watermark = in_flight or self._loaded_through(version.number)
                ctx = api.Context(
                    self.today.last_complete_day(), watermark, self.options.trending_floor
                )
                with (
                    changes.recording() as reads,
                    settled.using(self.parts, version.number, self.version.changes, ctx.end),
                ):
                    try:
                        status, body, kind = build(con, ctx)
                    except UnknownProject as exc:
                        status, body, kind = _error(404, str(exc), suggestions=exc.close)
        except BadParameter as exc:
            status, body, kind = _error(400, str(exc), parameter=exc.name)
            return self._plain(status, body, kind), None
        except (WarehouseError, duckdb.CatalogException) as exc:
            reason = first_line(exc)
            return self._plain(*_error(503, f"warehouse unavailable: {reason}")), None
        except NotFound:
            return self._plain(*_error(404, "no such route")), None
        answer = self._plain(status, body, kind, version.number)
        return answer._replace(
            last_day=reads.last_day,
            uploads=reads.uploads,
            volatile=reads.volatile,
            watermark=reads.watermark,
            project=reads.project,
        ), version

    def _note_latest_batch(self, con: Connection, version: int) -> None:
        """Read the latest batch hour loaded, once per data version."""
        if self._latest_batch[0] != version:
            self._latest_batch = (version, _latest_batch_hour(con))

    def _loaded_through(self, version: int) -> datetime | None:
        """The hour after the latest batch loaded at ``version`` (None: none, or not read)."""
        number, latest = self._latest_batch
        return latest + timedelta(hours=1) if number == version and latest else None

    def _watermark(self) -> datetime | None:
        """The watermark an answer computed now would show, as far as known without waiting
        (None: not known): the oldest batch hour in flight as last listed, else the hour
        after the latest batch loaded."""
        return self._in_flight[1] or self._loaded_through(self.version.current.number)

    def _available(self) -> bool:
        """Whether there is a warehouse to read (a server: always; it answers or errs)."""
        if self.path is None:
            return True
        return self.path.is_file() if self.duckdb else self.path.is_dir()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """The warehouse for one answer: DuckDB as :func:`reading` arranges; chDB's
        directory held for the answer (shared with publish in this process, waited for up to
        ``read_wait`` while another process has it); a server through one kept client."""
        if self.duckdb:
            assert self.path is not None
            with reading(self.path, self.options.read_wait) as con:
                yield con
            return
        if self.path is not None:
            engine = ChdbEngine(self.path, wait=self.options.read_wait)
            try:
                yield engine
            finally:
                engine.close()
            return
        with self._server_lock:  # answers are computed in several threads
            if self._server is None:
                self._server = open_engine(self.url)
            server = self._server
        yield server

    def _turn(self, *, long: bool) -> contextlib.AbstractContextManager[None]:
        """Taken once the warehouse is open: a turn at running Python for an answer computed
        here, by DuckDB or chDB (:func:`pythonhosted.threads.computing`; a ``long`` answer's
        one of the long turns); none for a ClickHouse server's, which waits on the network,
        so a slow server holds no other answer up."""
        return computing(long=long) if self.path is not None else contextlib.nullcontext()

    def _plain(self, status: int, body: bytes, kind: bytes, version: int = -1) -> Answer:
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return Answer(status, body, kind, etag, version)

    async def _oldest_in_flight(self) -> datetime | None:
        """The oldest batch hour not published yet (stores listed at most every 30 s).

        One listing at a time, shared by the requests that arrive meanwhile: each listing
        was its own before, so the first moment of a crowd of cold requests (and every 30 s
        after) listed both stores once per request (2,000 cold requests: 2,000 listings of
        each, and obstore's blocking pool grew to 300-500 threads for a local directory; on
        S3, 4,000 LIST requests).
        """
        checked, found = self._in_flight
        if time.monotonic() - checked < IN_FLIGHT_TTL:
            return found
        return await self._listing.run(True, self._list_in_flight)

    async def _list_in_flight(self) -> datetime | None:
        try:
            logs, results = (open_store(url, BATCH_TIMEOUTS) for url in self._stores)
            found = await oldest_in_flight(logs, results)
        except Exception as exc:  # no access to the stores: the warehouse alone tells
            log.warning("stats web cannot list the linehaul stores: %s", exc)
            found = None
        self._in_flight = (time.monotonic(), found)
        return found

    def _max_age(self) -> int:
        published = self.version.current.published_at
        bound = int(self.options.max_age)
        if published is None:
            return min(60, bound)
        interval = self.settings.linehaul.publish_interval
        remaining = (published + timedelta(seconds=interval)) - datetime.now(UTC).replace(
            tzinfo=None
        )
        seconds = int(remaining.total_seconds())
        return max(1, min(bound, seconds if seconds > 0 else 10))

    async def _send(
        self,
        send: Send,
        answer: Answer,
        request: dict[bytes, bytes],
        limit_headers: Headers,
        head: bool,
    ) -> int:
        headers = [*HEADERS, *CORS, *limit_headers, (b"etag", answer.etag.encode())]
        if answer.status == 503:
            headers.append((b"retry-after", b"5"))
        else:
            headers.append((b"cache-control", f"public, max-age={self._max_age()}".encode()))
        match = request.get(b"if-none-match")
        if answer.status == 200 and match and etag_matches(match.decode("latin-1"), answer.etag):
            await send_response(send, 304, headers=headers)
            return 304
        await send_response(
            send, answer.status, answer.body, content_type=answer.content_type, headers=headers,
            head=head,
        )  # fmt: skip
        return answer.status

    async def _static(self, send: Send, name: str, head: bool) -> int:
        asset = ASSETS.get(name)
        if asset is None:
            await send_text(send, 404, "Not found", headers=HEADERS)
            return 404
        body, kind = asset
        await send_response(
            send, 200, body, content_type=kind, head=head,
            headers=[*HEADERS, (b"cache-control", b"public, max-age=86400")],
        )  # fmt: skip
        return 200
