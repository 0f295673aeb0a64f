"""Per-client request budgets with the IETF RateLimit headers.

A fixed window per client address (``rate_limit`` requests per ``rate_window`` seconds):
cheap, and what the headers describe (draft-ietf-httpapi-ratelimit-headers: the policy
``"default";q=LIMIT;w=WINDOW`` and the state ``"default";r=REMAINING;t=RESET``). Past the
budget the answer is 429 with ``Retry-After``. Each worker process keeps its own counts,
so with N workers a client may get up to N budgets. Memory is bounded: the table holds at
most :data:`MAX_CLIENTS` addresses, and windows that ended are dropped first.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass

from pythonhosted.web.types import Headers, Scope

MAX_CLIENTS = 100_000


@dataclass(frozen=True)
class Decision:
    allowed: bool
    headers: Headers
    retry_after: int = 0


class RateLimiter:
    def __init__(
        self, limit: int, window: float, *, loopback: bool = False, trust_proxy: bool = False
    ) -> None:
        self.limit = limit
        self.window = window
        self.loopback = loopback
        self.trust_proxy = trust_proxy
        self._counts: dict[str, tuple[float, int]] = {}  # address -> (window start, used)

    def client(self, scope: Scope, headers: dict[bytes, bytes]) -> str:
        """The client's address: the first X-Forwarded-For hop when the proxy is trusted."""
        if self.trust_proxy:
            forwarded = headers.get(b"x-forwarded-for")
            if forwarded:
                return forwarded.decode("latin-1").split(",", 1)[0].strip()
        client = scope.get("client")
        return str(client[0]) if client else ""

    def applies(self, address: str) -> bool:
        if self.limit <= 0:
            return False
        if self.loopback:
            return True
        try:
            return not ipaddress.ip_address(address).is_loopback
        except ValueError:
            return True

    def check(self, address: str, now: float | None = None) -> Decision | None:
        """Count one request; None when no budget applies to this client."""
        if not self.applies(address):
            return None
        now = time.monotonic() if now is None else now
        start, used = self._counts.get(address, (now, 0))
        if now - start >= self.window:
            start, used = now, 0
        used += 1
        if address not in self._counts and len(self._counts) >= MAX_CLIENTS:
            self._sweep(now)
        self._counts[address] = (start, used)
        reset = max(1, math.ceil(start + self.window - now))
        remaining = max(0, self.limit - used)
        headers = [
            (b"ratelimit-policy", f'"default";q={self.limit};w={int(self.window)}'.encode()),
            (b"ratelimit", f'"default";r={remaining};t={reset}'.encode()),
        ]
        if used > self.limit:
            return Decision(False, [*headers, (b"retry-after", str(reset).encode())], reset)
        return Decision(True, headers)

    def _sweep(self, now: float) -> None:
        """Drop ended windows; if every window is live, the oldest half."""
        live = {a: v for a, v in self._counts.items() if now - v[0] < self.window}
        if len(live) >= MAX_CLIENTS:
            ordered = sorted(live.items(), key=lambda item: item[1][0])
            live = dict(ordered[len(ordered) // 2 :])
        self._counts = live
