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
#: Seconds a lookup's answer is reused; how many names are remembered at most (the oldest
#: answer goes first), and how many addresses of one name are kept (a name with thousands of
#: records must not hold thousands of strings; each address costs a connect attempt anyway).
#: So the cache holds at most 1024 x (253-byte name + 16 addresses) ~ 1 MB.
LOOKUP_TTL = 10.0
LOOKUP_CACHE = 1024
ADDRESSES_PER_NAME = 16
#: Policy verdicts kept per address text (see PolicyResolver._judge): ~4096 x 150 bytes.
VERDICTS = 4096

Key = tuple[str, int]


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
        self._cache: dict[Key, tuple[float, Sequence[str]]] = {}
        self._verdicts: dict[str, tuple[str, str | None]] = {}
        #: lookups under way; a request for the same name waits for the same answer, so a
        #: burst of requests for a new name makes one lookup, not one per request
        self._pending: dict[Key, asyncio.Task[Sequence[str]]] = {}

    @property
    def cached(self) -> int:
        return len(self._cache)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The allowed addresses of ``host`` as IP literals, in lookup order; Refused (404) if
        none is allowed or the name does not resolve (as go-camo answers both).

        ``host`` is a URL's raw host: a name, or an IP literal already made canonical by the
        URL checks (judged here again, without a lookup).
        """
        if _parse(host) is not None:
            return self.literal(host)
        return self._allowed(host, await self._lookup_cached((host, port)))

    def literal(self, host: str) -> list[str]:
        """:meth:`resolve` for a host that is an IP literal, without a coroutine: the policy
        judges it on every call all the same."""
        return self._allowed(host, (host,))

    def _allowed(self, host: str, texts: Sequence[str]) -> list[str]:
        allowed: list[str] = []
        refusals: list[str] = []
        for text in texts:
            canonical, reason = self._judge(text)
            if reason is None:
                allowed.append(canonical)
            else:
                refusals.append(reason)
        if not allowed:
            raise Refused(404, "address", f"{host}: " + (refusals[0] if refusals else "no address"))
        return allowed

    @staticmethod
    def is_literal(host: str) -> bool:
        return _parse(host) is not None

    def _judge(self, text: str) -> tuple[str, str | None]:
        """``text`` as a canonical IP literal and why the policy refuses it (None: allowed).

        The verdict is a pure function of the address and this resolver's policy, so it is
        kept per text: looking it up hashes one string, where the policy's own memo hashes an
        ``ipaddress`` object and the policy in Python (~6 µs a request in the proxy's loop).
        Every address of every answer still passes through here on every request.
        """
        verdict = self._verdicts.get(text)
        if verdict is None:
            address = _parse(text)
            if address is None:
                verdict = (text, f"address {text!r} is not an IP address")
            else:
                verdict = (str(address), self._policy.refusal(address))
            if len(self._verdicts) >= VERDICTS:
                self._verdicts.clear()  # bounded; refilled from the policy as asked
            self._verdicts[text] = verdict
        return verdict

    async def _lookup_cached(self, key: Key) -> Sequence[str]:
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < LOOKUP_TTL:
            return cached[1]
        task = self._pending.get(key)
        if task is None:
            task = self._pending[key] = asyncio.ensure_future(self._lookup_and_remember(key))
            task.add_done_callback(_retrieve)
        # shielded: one waiter giving up (its deadline passed) must not cancel the others'
        return await asyncio.shield(task)

    async def _lookup_and_remember(self, key: Key) -> Sequence[str]:
        host, port = key
        try:
            texts = tuple((await self._lookup(host, port))[:ADDRESSES_PER_NAME])
        except (OSError, ValueError):  # getaddrinfo's IDNA step raises UnicodeError
            raise Refused(404, "dns", f"cannot resolve {host}") from None
        finally:
            del self._pending[key]
        self._cache.pop(key, None)
        if len(self._cache) >= LOOKUP_CACHE:
            del self._cache[next(iter(self._cache))]  # the oldest answer
        self._cache[key] = (time.monotonic(), texts)
        return texts


def _retrieve(task: asyncio.Task[Sequence[str]]) -> None:
    """Mark a lookup's failure as seen even if every waiter had given up."""
    if not task.cancelled():
        task.exception()
