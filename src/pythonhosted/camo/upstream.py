"""Fetching from upstream: one pooled aiohttp session, redirects followed and re-checked by hand.

aiohttp does the HTTP; camo keeps the decisions. Every hop's URL is checked (scheme,
credentials, filter rules, IP literals) before a request is made, and names resolve through
:class:`PolicyResolver`, so the only sockets ever opened go to allowed addresses. Cookies are
never stored (one visitor's upstream cookies must not reach another's request), proxies in the
environment are ignored, and bodies are passed through undecoded.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.client_reqrep import ClientResponse
from aiohttp.connector import SocketFactoryType
from yarl import URL

from pythonhosted.camo.errors import Refused
from pythonhosted.camo.policy import AddressPolicy, literal_address
from pythonhosted.camo.resolver import AddressRefused, Lookup, PolicyResolver, system_lookup
from pythonhosted.camo.rules import Rules

REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: First-hop URLs remembered as parsed and checked (the checks depend only on the URL and
#: static settings); refusals raise, so they are never cached.
CHECKED_URLS = 4096


@dataclass(frozen=True)
class UrlChecks:
    """The per-hop URL rules (spec rules 2, 5, 7, 14) and the address rule for IP literals."""

    policy: AddressPolicy
    rules: Rules
    allow_credentials: bool

    def check(self, url: URL) -> URL:
        """``url`` ready to request (legacy IPv4 spellings made canonical), or Refused."""
        if url.scheme not in ("http", "https") or not url.is_absolute() or not url.raw_host:
            raise Refused(404, "url", "not an absolute http(s) URL")
        if (url.raw_user or url.raw_password) and not self.allow_credentials:
            raise Refused(404, "credentials", "URLs with credentials are not allowed")
        host = url.raw_host
        try:
            address = literal_address(host)
        except ValueError as exc:
            raise Refused(404, "url", str(exc)) from None
        if address is not None:
            reason = self.policy.refusal(address)
            if reason is not None:
                raise Refused(404, "address", reason)
            if str(address) != host:
                url = url.with_host(str(address))
        reason = self.rules.refusal(host, url.path)
        if reason is not None:
            raise Refused(404, "filter", reason)
        return url.with_fragment(None) if url.raw_fragment else url


class Upstream:
    """The client side of the proxy; create inside the running event loop, close on shutdown."""

    def __init__(
        self,
        checks: UrlChecks,
        *,
        max_redirects: int,
        connect_timeout: float,
        lookup: Lookup = system_lookup,
        socket_factory: SocketFactoryType | None = None,
    ) -> None:
        self._checks = checks
        self._max_redirects = max_redirects
        self._first_hop = functools.lru_cache(maxsize=CHECKED_URLS)(self._parse_and_check)
        connector = aiohttp.TCPConnector(
            resolver=PolicyResolver(checks.policy, lookup),
            limit=0,  # concurrency is bounded by the server, not by a hidden queue here
            ttl_dns_cache=10,
            socket_factory=socket_factory,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
            trust_env=False,
        )

    async def close(self) -> None:
        await self._session.close()

    async def open(self, method: str, url: str, headers: Mapping[str, str]) -> ClientResponse:
        """The first non-redirect response for ``url``; the caller must release it.

        The caller bounds the whole exchange with one deadline (a TimeoutError escapes here).
        """
        target = self._first_hop(url)
        for hop in range(self._max_redirects + 1):
            if hop:
                target = self._checks.check(target)
            response = await self._request(method, target, headers)
            location = response.headers.get("Location")
            if response.status not in REDIRECTS or location is None:
                return response
            response.release()
            try:
                target = target.join(URL(location))
            except (ValueError, TypeError):
                raise Refused(404, "url", "redirect to an invalid URL") from None
        raise Refused(404, "redirects", f"more than {self._max_redirects} redirects")

    def _parse_and_check(self, url: str) -> URL:
        try:
            target = URL(url)
        except (ValueError, TypeError):
            raise Refused(404, "url", "not a valid URL") from None
        return self._checks.check(target)

    async def _request(self, method: str, url: URL, headers: Mapping[str, str]) -> ClientResponse:
        try:
            return await self._session.request(method, url, headers=headers, allow_redirects=False)
        except aiohttp.ClientConnectorDNSError as exc:
            cause = exc.__cause__
            if isinstance(cause, AddressRefused):
                raise Refused(404, "address", str(cause)) from None
            raise Refused(502, "dns", f"cannot resolve {url.raw_host}") from None
        except aiohttp.ClientConnectorError:
            raise Refused(502, "connect", f"cannot connect to {url.raw_host}") from None
        except aiohttp.ClientError as exc:
            raise Refused(502, "upstream", f"upstream error: {type(exc).__name__}") from None
