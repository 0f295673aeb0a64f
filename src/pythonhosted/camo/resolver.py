"""Name resolution that only ever yields addresses the policy allows (spec rule 6).

The client dials exactly the IP literals returned here and does no lookup of its own, so
filtering here pins every connection to a checked address: DNS rebinding between "check" and
"connect" has no second lookup to exploit. Lookups are cached briefly; the policy judges the
addresses on every call, cached or not.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Sequence

from pythonhosted.camo.errors import Refused
from pythonhosted.camo.policy import AddressPolicy, IPAddress

#: ``(host, port) -> addresses``: the system resolver by default; tests pass a stub resolver
#: mapping names to addresses, so "evil.test -> 10.0.0.1" needs no DNS server.
Lookup = Callable[[str, int], Awaitable[Sequence[str]]]
#: Seconds a lookup's answer is reused, and how many names are remembered at most.
LOOKUP_TTL = 10.0
LOOKUP_CACHE = 1024


async def system_lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@functools.lru_cache(maxsize=4096)  # hot path: every request's host and addresses
def _parse(text: str) -> IPAddress | None:
    """``text`` as an IP address, or None (a name); a failed parse costs ~5 µs uncached."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class PolicyResolver:
    def __init__(self, policy: AddressPolicy, lookup: Lookup = system_lookup) -> None:
        self._policy = policy
        self._lookup = lookup
        self._cache: dict[tuple[str, int], tuple[float, Sequence[str]]] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        """The allowed addresses of ``host`` as IP literals, in lookup order; Refused (404) if
        none is allowed, Refused (502) if the name does not resolve.

        ``host`` is a URL's raw host: a name, or an IP literal already made canonical by the
        URL checks (judged here again, without a lookup).
        """
        literal = _parse(host)
        texts = [host] if literal is not None else await self._lookup_cached(host, port)
        allowed: list[str] = []
        refusals: list[str] = []
        for text in texts:
            address = _parse(text)
            if address is None:
                refusals.append(f"address {text!r} is not an IP address")
                continue
            reason = self._policy.refusal(address)
            if reason is None:
                allowed.append(str(address))
            else:
                refusals.append(reason)
        if not allowed:
            raise Refused(404, "address", f"{host}: " + (refusals[0] if refusals else "no address"))
        return allowed

    async def _lookup_cached(self, host: str, port: int) -> Sequence[str]:
        now = time.monotonic()
        cached = self._cache.get((host, port))
        if cached is not None and now - cached[0] < LOOKUP_TTL:
            return cached[1]
        try:
            texts = await self._lookup(host, port)
        except (OSError, ValueError):  # getaddrinfo's IDNA step raises UnicodeError
            raise Refused(502, "dns", f"cannot resolve {host}") from None
        if len(self._cache) >= LOOKUP_CACHE:
            self._cache.clear()
        self._cache[(host, port)] = (now, texts)
        return texts
