"""One cached image: what camo relayed for a target URL, and how fresh it is.

On disk an entry is one file: the body, then its description as JSON, then a 12-byte footer
(the description's length and a magic word). The description holds the body's length and
CRC-32, so a file cut short or holding garbage (a crash mid-write, a disk error) is recognised
and never served; writing the footer last means a file without one was never finished.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass, field, replace

import orjson

MAGIC = b"camo\x00ce1"
FOOTER = struct.Struct(">I8s")  # description length, MAGIC
#: Memory held by an entry besides its body (objects, header tuples): what the memory tier
#: charges per entry, so many tiny images cannot hold more than the byte bound says.
ENTRY_OVERHEAD = 1024


@functools.lru_cache(maxsize=4096)  # every hit asks; a pure function of the URL
def cache_key(url: str) -> str:
    """The file-safe key of a target URL."""
    return hashlib.sha256(url.encode("utf-8", "surrogateescape")).hexdigest()


class DamagedEntry(Exception):
    """A stored entry that is incomplete or does not match its checksum."""


@dataclass
class Entry:
    url: str  # the signed target URL (the cache key)
    final_url: str  # after redirects: re-checked against the filter rules on every hit
    headers: tuple[tuple[bytes, bytes], ...]  # relayed to clients (no Content-Length)
    length: int
    crc: int
    stored: float  # wall-clock time it was received or last revalidated
    lifetime: float  # seconds fresh
    age: float  # upstream's Age when received
    stale_allowed: bool  # may be served stale while upstream fails
    body: bytes | None = field(default=None, compare=False)  # held in memory, or None
    # A hit's head around its Age line, made on its first quick answer
    # (:meth:`pythonhosted.camo.proxy.Proxy.quick`); () when a header cannot go out as is
    head: tuple[bytes, bytes] | tuple[()] | None = field(default=None, compare=False, repr=False)

    def current_age(self, now: float) -> float:
        return self.age + max(0.0, now - self.stored)

    def fresh(self, now: float) -> bool:
        return self.current_age(now) < self.lifetime

    def usable_stale(self, now: float, window: float) -> bool:
        return self.stale_allowed and self.current_age(now) < self.lifetime + window

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def refreshed(
        self, *, stored: float, lifetime: float, age: float, stale_allowed: bool
    ) -> Entry:
        """This entry after a 304 from upstream: same body, new freshness."""
        return replace(self, stored=stored, lifetime=lifetime, age=age, stale_allowed=stale_allowed)

    @property
    def charge(self) -> int:
        """Bytes the memory tier counts for this entry."""
        return (self.length if self.body is not None else 0) + ENTRY_OVERHEAD

    def describe(self) -> bytes:
        """The description stored after the body on disk."""
        return orjson.dumps(
            {
                "url": self.url,
                "final_url": self.final_url,
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
                "length": self.length,
                "crc": self.crc,
                "stored": self.stored,
                "lifetime": self.lifetime,
                "age": self.age,
                "stale_allowed": self.stale_allowed,
            }
        )

    @classmethod
    def from_description(cls, data: bytes) -> Entry:
        try:
            meta = orjson.loads(data)
            return cls(
                url=str(meta["url"]),
                final_url=str(meta["final_url"]),
                headers=tuple(
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in meta["headers"]
                ),
                length=int(meta["length"]),
                crc=int(meta["crc"]),
                stored=float(meta["stored"]),
                lifetime=float(meta["lifetime"]),
                age=float(meta["age"]),
                stale_allowed=bool(meta["stale_allowed"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DamagedEntry(f"unreadable description: {exc}") from None
