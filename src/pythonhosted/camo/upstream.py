"""Fetching from upstream: camo's own keep-alive client, redirects followed and re-checked.

Every hop's URL is checked (scheme, credentials, filter rules, IP literals) before a request is
made, its name resolves through :class:`PolicyResolver`, and the socket is opened to one of the
checked IP literals, never to the name, so the only sockets ever opened go to allowed addresses.
No cookies are stored (one visitor's upstream cookies must not reach another's request), no
proxy from the environment is used, and bodies are passed through undecoded.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from pythonhosted.camo.dns import Lookup, PolicyResolver, system_lookup
from pythonhosted.camo.errors import Refused
from pythonhosted.camo.hostnames import MAX_NAME, local_name_refusal, name_refusal
from pythonhosted.camo.http1 import (
    READ_SIZE,
    BadResponse,
    Connection,
    Dial,
    Pool,
    Response,
    open_connection,
    request_head,
    request_parts,
)
from pythonhosted.camo.policy import AddressPolicy, literal_address
from pythonhosted.camo.rules import Rules

REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: First-hop URLs remembered as parsed and checked (the checks depend only on the URL and
#: static settings); refusals raise, so they are never cached, and URLs longer than
#: MEMO_URL_CHARS are checked every time, so the cache's bytes stay bounded too.
CHECKED_URLS = 4096
MEMO_URL_CHARS = 512
#: Longer hosts are refused before anything else looks at them (a name has at most 253
#: characters, an IPv6 literal with a zone far fewer).
MAX_HOST_CHARS = MAX_NAME + 1
DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")


@dataclass(frozen=True)
class UrlChecks:
    """The per-hop URL rules (spec rules 2, 5, 7, 14) and the address rule for IP literals."""

    policy: AddressPolicy
    rules: Rules
    allow_credentials: bool

    def check(self, url: URL) -> URL:
        """``url`` ready to request (legacy IPv4 spellings made canonical), or Refused.

        Every way a URL can be unusable (host, port, credentials) is a refusal here, so
        nothing later on the request path meets a URL it cannot handle.
        """
        if url.scheme not in ("http", "https") or not url.is_absolute() or not url.raw_host:
            raise Refused(404, "url", "not an absolute http(s) URL")
        if url.explicit_port == 0:
            raise Refused(404, "url", "port 0 is not a destination")
        if url.raw_user is not None or url.raw_password is not None:
            if not self.allow_credentials:
                raise Refused(404, "credentials", "URLs with credentials are not allowed")
            if _CONTROL.search(f"{url.user or ''}:{url.password or ''}"):
                raise Refused(404, "url", "control characters in the URL's credentials")
        host = url.raw_host
        if len(host) > MAX_HOST_CHARS:
            raise Refused(404, "url", f"host name longer than {MAX_NAME} characters")
        try:
            address = literal_address(host)
        except ValueError as exc:
            raise Refused(404, "url", str(exc)) from None
        if address is None:
            reason = name_refusal(host) or local_name_refusal(host)
            if reason is not None:
                raise Refused(404, "url", reason)
        else:
            reason = self.policy.refusal(address)
            if reason is not None:
                raise Refused(404, "address", reason)
            if str(address) != host:
                url = url.with_host(str(address))
        reason = self.rules.refusal(url.raw_host or host, url.raw_path)
        if reason is not None:
            raise Refused(404, "filter", reason)
        return url.with_fragment(None) if url.raw_fragment else url


class Hop:
    """A checked URL and what every request to it needs (scheme, host, port, the request
    line's target and Host), worked out once: yarl builds each of them in Python, and a first
    hop's Hop is memoised with its check."""

    __slots__ = ("_parts", "host", "port", "scheme", "url")

    def __init__(self, url: URL) -> None:
        self.url = url
        self.scheme = url.scheme
        self.host = url.raw_host or ""
        self.port = DEFAULT_PORTS[url.scheme] if url.explicit_port is None else url.explicit_port
        self._parts: tuple[str, str] | None = None

    def head(self, method: str, headers: Mapping[str, str]) -> bytes:
        """The request head; ValueError if a part would break the framing."""
        if self._parts is None:
            self._parts = request_parts(self.url)
        return request_head(method, self.url, headers, self._parts)


def _location_url(raw: bytes) -> URL:
    """A Location header as a URL: UTF-8 if it is, else its non-ASCII bytes percent-encoded
    (as browsers and Go's client send them), never silently dropped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = _HIGH_BYTE.sub(lambda byte: b"%%%02X" % byte[0][0], raw).decode("ascii")
    return URL(text)


class Upstream:
    """The client side of the proxy; create inside the running event loop, close on shutdown."""

    def __init__(
        self,
        checks: UrlChecks,
        *,
        max_redirects: int,
        connect_timeout: float,
        lookup: Lookup = system_lookup,
        dial: Dial = open_connection,
        keep_alive: bool = True,
    ) -> None:
        self._checks = checks
        self.loop = asyncio.get_running_loop()  # the loop this client's connections belong to
        self._max_redirects = max_redirects
        self._connect_timeout = connect_timeout
        self._first_hop = functools.lru_cache(maxsize=CHECKED_URLS)(self._checked_hop)
        self._resolver = PolicyResolver(checks.policy, lookup)
        self._dial = dial
        self._pool = Pool() if keep_alive else Pool(max_idle=0)  # --no-bk: a socket per request
        self._tls = ssl.create_default_context()  # built once: loading the CA store is slow
        #: every connection's socket reads land here, one at a time (llhttp copies them out)
        self._read_buffer = memoryview(bytearray(READ_SIZE))

    async def close(self) -> None:
        self._pool.close()

    def memo_entries(self) -> dict[str, int]:
        """Entries held by each of this client's caches (for the metrics)."""
        return {
            "checked_urls": self._first_hop.cache_info().currsize,
            "dns": self._resolver.cached,
            "idle_connections": self._pool.idle,
        }

    async def open(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        """The first non-redirect response for ``url``; the caller must release it.

        The caller bounds the whole exchange with one deadline (a TimeoutError escapes here).
        """
        hop = self._hop(url)
        for redirects in range(self._max_redirects + 1):
            response = await self._request(method, hop, headers)
            location = response.header(b"location")
            if response.status not in REDIRECTS or location is None:
                response.target = hop.url
                return response
            response.release()
            try:
                target = hop.url.join(_location_url(location))
            except (ValueError, TypeError):  # UnicodeError (IDNA) is a ValueError
                raise Refused(404, "url", "redirect to an invalid URL") from None
            if redirects < self._max_redirects:
                hop = Hop(self._checks.check(target))
        raise Refused(404, "redirects", f"more than {self._max_redirects} redirects")

    def first_hop(self, url: str) -> URL:
        """``url`` parsed and checked (memoised), or Refused: what the cache asks before
        answering from what it holds."""
        return self._hop(url).url

    def _hop(self, url: str) -> Hop:
        return self._first_hop(url) if len(url) <= MEMO_URL_CHARS else self._checked_hop(url)

    def _checked_hop(self, url: str) -> Hop:
        return Hop(self._parse_and_check(url))

    def check_final(self, url: str) -> None:
        """Refused if a cached response's final URL (after redirects) would now be refused."""
        self._parse_and_check(url)

    def _parse_and_check(self, url: str) -> URL:
        try:
            target = URL(url)
        except (ValueError, TypeError):
            raise Refused(404, "url", "not a valid URL") from None
        return self._checks.check(target)

    async def _request(self, method: str, hop: Hop, headers: Mapping[str, str]) -> Response:
        scheme, host, port = hop.scheme, hop.host, hop.port
        try:
            head = hop.head(method, headers)
        except ValueError as exc:
            raise Refused(502, "upstream", f"upstream error: {exc}") from None
        resolver = self._resolver
        if resolver.is_literal(host):
            addresses = resolver.literal(host)  # judged all the same, without a coroutine
        else:
            addresses = await resolver.resolve(host, port)
        try:
            for address in addresses:
                conn = self._pool.take((scheme, host, port, address))
                if conn is not None:
                    response = await self._exchange(conn, head, method)
                    if response is not None:
                        return response
            conn = await self._connect(scheme, host, port, addresses)
            response = await self._exchange(conn, head, method)
            assert response is not None  # only a reused connection can turn out stale
            return response
        except BadResponse as exc:
            raise Refused(502, "upstream", f"upstream error: {exc}") from None
        except OSError as exc:
            raise Refused(502, "upstream", f"upstream error: {type(exc).__name__}") from None

    async def _connect(self, scheme: str, host: str, port: int, addresses: list[str]) -> Connection:
        """A new connection to the first checked address that accepts one."""
        context = self._tls if scheme == "https" else None
        for address in addresses:
            factory = functools.partial(
                Connection, (scheme, host, port, address), self._read_buffer
            )
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, conn = await self._dial(
                        factory, address, port, context, host if context is not None else None
                    )
            except (OSError, TimeoutError):
                continue
            return conn
        raise Refused(502, "connect", f"cannot connect to {host}")

    async def _exchange(self, conn: Connection, head: bytes, method: str) -> Response | None:
        """Send the request and read the response head; None if a reused connection turned
        out to have been closed by upstream before answering (the request is then retried on
        a new connection: GET and HEAD are safe to repeat)."""
        response = Response(conn, self._pool, head_only=method == "HEAD")
        try:
            conn.write(head)
            await response.start()
        except (BadResponse, OSError):
            response.release()
            if conn.reused and response.received == 0:
                return None
            raise
        except BaseException:
            response.release()
            raise
        return response
