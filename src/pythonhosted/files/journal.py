"""Purges shared by the workers of one ``files serve --workers N``: one purge, every cache.

The workers share one listening socket, so a ``PURGE`` reaches one of them at random, while
each keeps its own memory cache; a deleted (or taken down) file would go on being served by
the others. So the worker that takes a purge also appends the key to a journal every worker
of the instance maps, and each worker reads what is new in it before it looks up an object.

Looking costs one 8-byte read from shared memory per request (the journal's length, kept in
its first 8 bytes, which every worker maps). That read is only a hint: nothing makes it atomic
(CPython writes such numbers a byte at a time), so when it moved the worker takes a shared lock
and reads the length and the new entries from the file, which writers change only under an
exclusive lock: never half an entry, never a torn length. A torn hint can at worst delay a
purge by a few nanoseconds, to the next request. Entries are JSON strings, one per line (a key
may hold any character, a newline too). The journal lives in a private temporary directory for
as long as the instance runs; purges are rare (takedowns, deletes), so it stays small.
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
        self._length = mmap.mmap(self._fd, _LENGTH.size, prot=mmap.PROT_READ)
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            self._seen = self._end()  # a worker that starts now has nothing cached to forget
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @staticmethod
    def create(path: Path) -> Path:
        """Write a new, empty journal at ``path`` (before the workers start, which open it)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _LENGTH.pack(0))
        finally:
            os.close(fd)
        return path

    def _hint(self) -> int:
        return int(_LENGTH.unpack_from(self._length)[0])

    def _end(self) -> int:
        """The length as written (call with the lock held)."""
        return int(_LENGTH.unpack(os.pread(self._fd, _LENGTH.size, 0))[0])

    def publish(self, key: str) -> None:
        """Tell every worker (this one too, at its next look) to forget ``key``."""
        entry = orjson.dumps(key) + b"\n"
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            end = self._end()
            os.pwrite(self._fd, entry, _LENGTH.size + end)
            os.pwrite(self._fd, _LENGTH.pack(end + len(entry)), 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def news(self) -> list[str]:
        """Keys purged by any worker since the last look (usually none: one memory read)."""
        if self._hint() == self._seen:
            return []
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            end = self._end()
            data = os.pread(self._fd, end - self._seen, _LENGTH.size + self._seen)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._seen = end
        return [orjson.loads(line) for line in data.splitlines()]
