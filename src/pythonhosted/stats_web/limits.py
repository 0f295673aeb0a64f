"""Per-client request budgets with the IETF RateLimit headers.

A fixed window per client address (``rate_limit`` requests per ``rate_window`` seconds):
cheap, and what the headers describe (draft-ietf-httpapi-ratelimit-headers: the policy
``"default";q=LIMIT;w=WINDOW`` and the state ``"default";r=REMAINING;t=RESET``). Past the
budget the answer is 429 with ``Retry-After``.

The counts are one instance's, however many workers it runs: they live in a table of fixed
size in memory the workers share (a file each maps, made by ``stats-web serve`` before they
start; see :class:`ClientTable`). Each worker kept its own counts before, so with N workers a
client got up to N budgets, and one that kept its connection open got one. Memory is bounded
by the table's size: :data:`SLOTS` clients at once; a new client takes the place of one whose
window ended, else of the oldest.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import math
import mmap
import os
import struct
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from pythonhosted.web.instancefiles import instance_file, worker_file
from pythonhosted.web.types import Headers, Scope

SLOTS = 131_072  # clients counted at once (3 MB of table)
PROBES = 16  # slots looked at for one address: the table's neighbourhood
_SLOT = struct.Struct("<QdI4x")  # address hash (0: free), window start (monotonic), used
TABLE = "stats_web_client_table"  # the instance's file (:mod:`pythonhosted.web.instancefiles`)


class ClientTable:
    """Requests per client address in the current window, in a table of ``slots`` fixed slots
    shared by every process that maps ``path`` (or private to this one when there is none).

    Hand-written: the counts must be shared by processes and bounded in memory, and a request
    costs a hash, a lock and a few reads of the mapping (a shared dict or a database per
    request would cost more than the answer from cache it guards). The clock is
    ``time.monotonic``: one clock for every process of the machine.
    """

    def __init__(self, path: Path | None = None, slots: int = SLOTS) -> None:
        self.slots = slots
        size = slots * _SLOT.size
        if path is None:
            self._fd: int | None = None
            self._map = mmap.mmap(-1, size)
        else:
            self._fd = os.open(path, os.O_RDWR)
            self._map = mmap.mmap(self._fd, size)

    @staticmethod
    def create(path: Path, slots: int = SLOTS) -> Path:
        """An empty table at ``path``, for the workers about to start."""
        with open(path, "xb") as file:
            file.truncate(slots * _SLOT.size)
        return path

    def count(self, address: str, now: float, window: float) -> tuple[float, int]:
        """Count one request of ``address``: its window's start and the requests in it."""
        digest = hashlib.blake2b(address.encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "little") or 1
        if self._fd is not None:  # shared: one process at a time (private: one loop thread)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            place, start, used = self._find(key, now, window)
            if now - start >= window:
                start, used = now, 0
            used += 1
            _SLOT.pack_into(self._map, place * _SLOT.size, key, start, used)
        finally:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return start, used

    def _find(self, key: int, now: float, window: float) -> tuple[int, float, int]:
        """The slot of ``key`` with its start and count; else a free one (start -inf), one
        whose window ended, or the one whose window started first."""
        free: int | None = None
        oldest, oldest_start = 0, math.inf
        for probe in range(PROBES):
            place = (key + probe) % self.slots
            held, start, used = _SLOT.unpack_from(self._map, place * _SLOT.size)
            if held == key:
                return place, start, used
            if held == 0:  # never taken: ``key`` is not further on (slots are never emptied)
                return (place if free is None else free), -math.inf, 0
            if free is None and now - start >= window:
                free = place
            if start < oldest_start:
                oldest, oldest_start = place, start
        return (free if free is not None else oldest), -math.inf, 0


def shared_client_table() -> AbstractContextManager[Path]:
    """A table for the workers started inside the block (:func:`worker_client_table`)."""
    return instance_file(TABLE, ClientTable.create)


def worker_client_table() -> ClientTable:
    """The instance's table for this worker, or a private one when it runs alone."""
    return ClientTable(worker_file(TABLE))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    headers: Headers
    retry_after: int = 0


class RateLimiter:
    def __init__(
        self,
        limit: int,
        window: float,
        *,
        loopback: bool = False,
        trust_proxy: bool = False,
        table: ClientTable | None = None,
    ) -> None:
        self.limit = limit
        self.window = window
        self.loopback = loopback
        self.trust_proxy = trust_proxy
        self.table = table if table is not None else ClientTable()

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
        start, used = self.table.count(address, now, self.window)
        reset = max(1, math.ceil(start + self.window - now))
        remaining = max(0, self.limit - used)
        headers = [
            (b"ratelimit-policy", f'"default";q={self.limit};w={int(self.window)}'.encode()),
            (b"ratelimit", f'"default";r={remaining};t={reset}'.encode()),
        ]
        if used > self.limit:
            return Decision(False, [*headers, (b"retry-after", str(reset).encode())], reset)
        return Decision(True, headers)
