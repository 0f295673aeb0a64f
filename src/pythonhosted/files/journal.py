"""Purges shared by the workers of one ``files serve --workers N``: one purge, every cache.

The workers share one listening socket, so a ``PURGE`` reaches one of them at random, while
each keeps its own memory cache; a deleted (or taken down) file would go on being served by
the others. So the worker that takes a purge also appends the key to a journal every worker
of the instance maps, and each worker reads what is new in it before it looks up an object.

Looking costs one 8-byte read from shared memory per request (the journal's length, kept in
its first 8 bytes, which every worker maps); only when it moved does a worker read the new
entries (one ``pread``), so a purge is in effect on every worker by its next request.
Writers take an exclusive ``flock`` to append and publish the new length after the entry is
written, so a reader never sees a length whose bytes are not there. Entries are JSON strings,
one per line (a key may hold any character, a newline too). The journal lives in a private
temporary directory for as long as the instance runs; purges are rare (takedowns, deletes),
so it stays small.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

import orjson

# How `files serve` hands its workers the journal: an internal handoff, not a setting.
JOURNAL_ENV = "_PYTHONHOSTED_FILES_PURGE_JOURNAL"
_LENGTH = struct.Struct("<Q")


class PurgeJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR)
        self._length = mmap.mmap(self._fd, _LENGTH.size)
        self._seen = self._end()  # a worker that starts now has nothing cached to forget

    @staticmethod
    def create(path: Path) -> Path:
        """Write a new, empty journal at ``path`` (before the workers start, which open it)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _LENGTH.pack(0))
        finally:
            os.close(fd)
        return path

    def _end(self) -> int:
        return int(_LENGTH.unpack_from(self._length)[0])

    def publish(self, key: str) -> None:
        """Tell every worker (this one too, at its next look) to forget ``key``."""
        entry = orjson.dumps(key) + b"\n"
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            end = self._end()
            os.pwrite(self._fd, entry, _LENGTH.size + end)
            _LENGTH.pack_into(self._length, 0, end + len(entry))
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def news(self) -> list[str]:
        """Keys purged by any worker since the last look (usually none: one memory read)."""
        end = self._end()
        if end == self._seen:
            return []
        data = os.pread(self._fd, end - self._seen, _LENGTH.size + self._seen)
        complete = data[: data.rfind(b"\n") + 1]
        self._seen += len(complete)
        return [orjson.loads(line) for line in complete.splitlines()]
