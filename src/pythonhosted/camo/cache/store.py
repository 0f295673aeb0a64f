"""Two tiers: small hot images in memory (cachetools' LRU by bytes), every image on disk.

Every stored image goes to disk (it survives restarts and memory eviction); one no larger
than ``memory_object_bytes`` is also kept in memory, where a hit costs no system call. Both
tiers are bounded by bytes, least recently used first out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cachetools import LRUCache

from pythonhosted.camo.cache.disk import DiskTier, DiskWriter
from pythonhosted.camo.cache.entry import DamagedEntry, Entry
from pythonhosted.camo.cache.freshness import Freshness
from pythonhosted.threads import short_io

#: a body at most this big is checksummed inline; a bigger one in a thread of the short-I/O
#: pool (:mod:`pythonhosted.threads`), never behind another service's long work
INLINE_CHECK_BYTES = 1024 * 1024


@dataclass
class Hit:
    entry: Entry  # entry.body is set when the body is in memory
    file: BinaryIO | None = None  # else the open file, at the body's start

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class CacheStore:
    def __init__(self, disk: DiskTier, memory_bytes: int, memory_object_bytes: int) -> None:
        self.disk = disk
        self.memory_object_bytes = memory_object_bytes
        self.memory: LRUCache[str, Entry] = LRUCache(
            maxsize=max(1, memory_bytes), getsizeof=lambda entry: entry.charge
        )

    async def get(self, key: str) -> Hit | None:
        """The entry for ``key`` if either tier has it whole; DamagedEntry if the disk copy
        turned out damaged (it is dropped)."""
        entry = self.memory.get(key)
        if entry is not None:
            return Hit(entry)
        found = self.disk.describe(key)
        if found is None:
            return None
        entry, file = found
        try:
            if self.disk.needs_check(key):
                if entry.length <= INLINE_CHECK_BYTES:
                    self.disk.check(key, entry, file)
                else:
                    await short_io(self.disk.check, key, entry, file)
            if entry.length <= self.memory_object_bytes:
                entry.body = file.read(entry.length)
                file.close()
                self._remember(key, entry)
                return Hit(entry)
        except (DamagedEntry, OSError):
            file.close()
            raise
        return Hit(entry, file)

    def _remember(self, key: str, entry: Entry) -> None:
        if entry.body is not None and entry.charge <= self.memory.maxsize:
            self.memory[key] = entry

    def writer(self, key: str) -> DiskWriter:
        return self.disk.writer(key)

    def stored(self, key: str, entry: Entry) -> None:
        """``entry`` was committed to disk; keep it in memory too if it is small."""
        self.memory.pop(key, None)
        if entry.body is not None and entry.length <= self.memory_object_bytes:
            self._remember(key, entry)

    def refresh(self, key: str, entry: Entry, freshness: Freshness) -> Entry:
        """The entry after upstream confirmed it (304), with the new freshness."""
        refreshed = entry.refreshed(
            stored=time.time(),
            lifetime=freshness.lifetime,
            age=freshness.age,
            stale_allowed=freshness.stale_allowed,
        )
        self.disk.refresh(key, refreshed)
        if key in self.memory:
            self.memory[key] = refreshed
        return refreshed

    def forget_all(self) -> list[Path]:
        """Forget every entry of both tiers; the disk files to delete, as
        :meth:`DiskTier.forget_all`."""
        self.memory.clear()
        return self.disk.forget_all()

    def drop(self, key: str) -> bool:
        in_memory = self.memory.pop(key, None) is not None
        return self.disk.drop(key) or in_memory

    @property
    def memory_bytes(self) -> int:
        return int(self.memory.currsize)
