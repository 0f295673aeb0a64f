"""Name resolution that only ever yields addresses the policy allows (spec rule 6).

aiohttp's connector connects to exactly the addresses its resolver returns and does no lookup
of its own, so filtering here pins every connection to a checked address: DNS rebinding between
"check" and "connect" has no second lookup to exploit. IP-literal hosts bypass resolvers in
aiohttp; :func:`pythonhosted.camo.upstream.checked_url` judges those before any request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

from aiohttp.abc import AbstractResolver, ResolveResult

from pythonhosted.camo.policy import AddressPolicy

#: ``(host, port) -> addresses``: the system resolver by default; tests pass a stub resolver
#: mapping names to addresses, so "evil.test -> 10.0.0.1" needs no DNS server.
Lookup = Callable[[str, int], Awaitable[Sequence[str]]]


class AddressRefused(OSError):
    """Every address of a name is refused; an OSError so aiohttp reports it as a DNS failure
    (``ClientConnectorDNSError``) with this as its cause, and never connects."""


async def system_lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PolicyResolver(AbstractResolver):
    def __init__(self, policy: AddressPolicy, lookup: Lookup = system_lookup) -> None:
        self._policy = policy
        self._lookup = lookup

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results: list[ResolveResult] = []
        refusals: list[str] = []
        for text in await self._lookup(host, port):
            address = ipaddress.ip_address(text)
            reason = self._policy.refusal(address)
            if reason is not None:
                refusals.append(reason)
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not results:
            raise AddressRefused(f"{host}: " + (refusals[0] if refusals else "no address"))
        return results

    async def close(self) -> None:
        """Nothing to release: lookups hold no resources between calls."""
