"""The simple index as an ASGI app (simple-index.md rules 1-6).

Pages are built from the catalog the uploads write, cached per project for ``cache_ttl``
seconds in a bounded cache (:mod:`pythonhosted.index.cached_catalog`; uploads, yanks and
deletes show within a second, when the catalog's generation changes; the responses
themselves say max-age=600 as PyPI's do; gzipped for clients that take it, as PyPI's CDN
sends them), and every project-page request writes a
``simple|…`` line to the same log store as downloads, so linehaul fills the
``simple_requests`` table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from packaging.utils import canonicalize_name
from prometheus_client import Gauge

from pythonhosted.boundedlog import failure_log
from pythonhosted.catalog import CatalogWatch, is_project_name
from pythonhosted.eventlog import EventLog
from pythonhosted.index.cached_catalog import CatalogPages
from pythonhosted.index.negotiate import choose
from pythonhosted.index.render import (
    JSON_TYPE,
    index_html,
    index_json,
    project_html,
    project_json,
)
from pythonhosted.index.rendered import Page, RenderedPages
from pythonhosted.logline import simple_line
from pythonhosted.storage import StorageError, Store
from pythonhosted.web.clientfacts import ClientFacts
from pythonhosted.web.drain import Stopping, unless_stopping
from pythonhosted.web.http import etag_matches, preferred_encoding
from pythonhosted.web.metrics import ServiceRegistry
from pythonhosted.web.request import Request
from pythonhosted.web.responses import send_response, send_text
from pythonhosted.web.shell import Service
from pythonhosted.web.types import Headers, Receive, Scope, Send

log = logging.getLogger(__name__)
CACHE_CONTROL = (b"cache-control", b"max-age=600, public")
VARY = (b"vary", b"Accept, Accept-Encoding")
GZIP = (b"content-encoding", b"gzip")


@dataclass(frozen=True, slots=True)
class IndexOptions:
    # Base URL of the files edge. None: links are root-relative (the files on this page's own
    # host), never built from the request's Host header, which a shared cache may not key on.
    files_url: str | None = None
    cache_ttl: float = 60.0
    cache_max_bytes: int = 256 * 2**20
    client: ClientFacts = field(default_factory=ClientFacts)


class IndexApp:
    def __init__(
        self, store: Store, event_log: EventLog | None, options: IndexOptions | None = None
    ) -> None:
        self.store = store
        self.log = event_log
        self._failures = failure_log(log, "index store")
        self.options = options or IndexOptions()
        self.registry = ServiceRegistry("index")
        self.pages = CatalogPages(
            store, self.options.cache_ttl, self.options.cache_max_bytes, CatalogWatch(store)
        )
        self.rendered = RenderedPages(self.options.cache_max_bytes)
        entries = Gauge("index_cache_entries", "Project names cached.", registry=self.registry)
        entries.set_function(lambda: self.pages.entries)
        size = Gauge(
            "index_cache_bytes",
            "Estimated bytes of cached catalog records.",
            registry=self.registry,
        )
        size.set_function(lambda: self.pages.bytes)

    def service(self, access_log: bool = False) -> Service:
        """This index as an ASGI app, in the service shell."""
        return Service(
            "index",
            self.handle,
            self.registry,
            client=self.options.client,
            methods=("GET", "HEAD"),
            # the log ships in the background and flushes at stop
            hooks=[self.rendered.workers.hooks, self.pages.hooks, EventLog.lifespan(self.log)],
            access_log=access_log,
        )

    async def handle(self, request: Request, receive: Receive, send: Send) -> None:
        scope, headers, security = request.scope, request.headers, request.security
        path = request.path
        method = request.method
        if path == "/simple":
            await self._redirect(send, "/simple/", security)
            return
        if not path.startswith("/simple/"):
            await send_text(send, 404, "Not Found", headers=security)
            return
        name = path[len("/simple/") :].rstrip("/")
        if "/" in name or (name and not is_project_name(name)):
            await send_text(send, 404, "Not Found", headers=security)
            return
        if name and (name != canonicalize_name(name) or not path.endswith("/")):
            await self._redirect(send, f"/simple/{canonicalize_name(name)}/", security)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        content_type = choose(
            headers.get(b"accept", b"").decode("latin-1") or None,
            query.get("format", [None])[0],
        )
        if content_type is None:
            await send_text(
                send, 406, "Not Acceptable: ask for PEP 691 JSON or HTML", headers=security
            )
            return
        try:
            page = await (self._project(name, content_type) if name else self._root(content_type))
        except StorageError as exc:
            self._failures.note(
                logging.WARNING, "unavailable", "index unavailable for %r: %s", name, exc
            )
            await send_text(send, 503, "Storage unavailable", headers=security)
            return
        except Stopping:
            await send_text(send, 503, "Stopping: ask again", headers=security)
            return
        if page is None:
            await send_text(send, 404, "Not Found", headers=security)
            return
        body, etag = page.body, page.etag
        response_headers = [*security, CACHE_CONTROL, VARY]
        accepted = headers.get(b"accept-encoding", b"").decode("latin-1")
        if page.gzipped is not None and preferred_encoding(accepted, ("gzip",)):
            body, etag = page.gzipped, page.gzipped_etag
            response_headers.append(GZIP)
        response_headers.append((b"etag", etag.encode()))
        if_none_match = headers.get(b"if-none-match")
        status = (
            304 if if_none_match and etag_matches(if_none_match.decode("latin-1"), etag) else 200
        )
        if name:
            self._log_request(scope, headers)
        if status == 304:
            await send_response(send, 304, headers=response_headers)
        else:
            await send_response(
                send,
                200,
                body,
                content_type=content_type.encode(),
                headers=response_headers,
                head=method == "HEAD",
            )

    async def _root(self, content_type: str) -> Page:
        # The first walk of a million projects takes longer than any drain: a stop answers
        # this request at once rather than hold the stop to cut it.
        names = await unless_stopping(self.pages.project_names())
        render = index_json if content_type == JSON_TYPE else index_html
        return await self.rendered.page(("", content_type), names, lambda: render(names))

    async def _project(self, name: str, content_type: str) -> Page | None:
        records = await self.pages.records(name)
        if not records:
            return None
        files_url = self.options.files_url or ""  # root-relative: the same page for every Host
        display = records[0].project
        render = project_json if content_type == JSON_TYPE else project_html
        return await self.rendered.page(
            (name, content_type, files_url),
            records,
            lambda: render(display, records, files_url),
        )

    def _log_request(self, scope: Scope, headers: dict[bytes, bytes]) -> None:
        if self.log is None or scope["method"] != "GET":
            return
        client = self.options.client
        protocol, cipher = client.tls(headers)
        user_agent = headers.get(b"user-agent")
        raw = scope.get("raw_path") or scope["path"].encode()
        self.log.append(
            simple_line(
                timestamp=time.time(),
                country=client.country(scope, headers),
                url=raw.split(b"?", 1)[0].decode("latin-1"),
                tls_protocol=protocol,
                tls_cipher=cipher,
                user_agent=user_agent.decode("latin-1") if user_agent else None,
            )
        )

    @staticmethod
    async def _redirect(send: Send, location: str, security: Headers) -> None:
        await send_response(send, 301, b"", headers=[*security, (b"location", location.encode())])
