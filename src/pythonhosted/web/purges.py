"""Purges shared by the workers of one service (``files serve --workers N``, ``camo serve
--workers N``): one purge, every cache.

The workers share one listening socket, so a ``PURGE`` reaches one of them at random, while
each keeps its own cache (the files edge's memory; camo's memory and its own slot of the disk
cache); a deleted (or taken down) file or image would go on being served by the others.
So the worker that takes a purge also appends the key to a journal every worker of the
instance maps, and each worker reads what is new in it before it looks up an object.

Looking costs one 8-byte read from shared memory per request (the journal's length, kept in
its first 8 bytes, which every worker maps). That read is only a hint: nothing makes it atomic
(CPython writes such numbers a byte at a time), so when it moved the worker takes a shared lock
and reads the length and the new entries from the file, which writers change only under an
exclusive lock: never half an entry, never a torn length. An entry is written whole before the
length counts it, so a writer killed, or refused by a full disk, part-way leaves bytes past the
length that no one reads and the next entry overwrites; the purge it was for is refused, not
acknowledged. A torn hint can at worst delay a
purge by a few nanoseconds, to the next request. Entries are JSON strings, one per line (a key
may hold any character, a newline too). The journal lives in a private temporary directory for
as long as the instance runs.

Its size is bounded: positions are counted from the instance's first purge (the length in the
header is the end of everything ever written, so it never repeats), and the header also says
where the file's first entry stands. A purge that would take the file past ``max_bytes`` starts
it afresh at the current end. A worker that had not read up to there cannot know which keys it
missed, so it forgets everything (:meth:`PurgeJournal.news` says so), which is always safe.
It grew by ~93 bytes a purge for the life of the instance: 100,000 purges (a few large
deletes: 40,000 for a 20,000-file release) left 9.3 MB in the temporary directory, often a
tmpfs, that is memory.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
from contextlib import AbstractContextManager
from pathlib import Path

import orjson

from pythonhosted.web.instancefiles import instance_file, worker_file

MAX_BYTES = 4 * 2**20  # ~45,000 purges of ~93 bytes
_POSITION = struct.Struct("<Q")
_HEADER = struct.Struct("<QQ")  # the end of everything written, where the file's entries start
EVERYTHING = None  # what news() returns when this worker cannot know which keys it missed


class PurgeJournal:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._fd = os.open(path, os.O_RDWR)
        self._length = mmap.mmap(self._fd, _POSITION.size, prot=mmap.PROT_READ)
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            self._seen, _ = self._header()  # a worker that starts now has nothing cached
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @staticmethod
    def create(path: Path) -> Path:
        """Write a new, empty journal at ``path`` (before the workers start, which open it)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _HEADER.pack(0, 0))
        finally:
            os.close(fd)
        return path

    def _hint(self) -> int:
        return int(_POSITION.unpack_from(self._length)[0])

    def _header(self) -> tuple[int, int]:
        """The end of everything written and where the file's first entry stands (call with
        the lock held)."""
        end, start = _HEADER.unpack(os.pread(self._fd, _HEADER.size, 0))
        return int(end), int(start)

    def publish(self, key: str) -> None:
        """Tell every worker (this one too, at its next look) to forget ``key``."""
        entry = orjson.dumps(key) + b"\n"
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            end, start = self._header()
            if end - start + len(entry) > self.max_bytes:
                start = end  # afresh: whoever had not read up to here forgets everything
                # Said before the entries go: a writer killed between the two had readers
                # take the emptied file for the entries they had not read.
                os.pwrite(self._fd, _HEADER.pack(end, start), 0)
                os.ftruncate(self._fd, _HEADER.size)
            _write_all(self._fd, entry, _HEADER.size + end - start)
            os.pwrite(self._fd, _HEADER.pack(end + len(entry), start), 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def news(self) -> list[str] | None:
        """Keys purged by any worker since the last look (usually none: one memory read), or
        :data:`EVERYTHING` (None) when the journal started afresh past what this worker had
        read: it cannot know what it missed, so it must forget everything."""
        if self._hint() == self._seen:
            return []
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            end, start = self._header()
            missed = self._seen < start
            data = (
                b""
                if missed
                else os.pread(self._fd, end - self._seen, _HEADER.size + self._seen - start)
            )
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._seen = end
        if missed:
            return EVERYTHING
        return [orjson.loads(line) for line in data.splitlines()]


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` or raise OSError (a full disk, a file-size limit).

    A write may take only part of it and say so in its count: unchecked, the header counted a
    torn entry that every worker then failed to read at every request.
    """
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[written:], offset + written


def shared_journal(service: str) -> AbstractContextManager[Path]:
    """A new journal for the workers ``service`` starts inside the block (they find it with
    :func:`worker_journal`), removed when the block ends."""
    return instance_file(f"{service}_purge_journal", PurgeJournal.create)


def worker_journal(service: str) -> PurgeJournal | None:
    """The journal this worker of ``service`` shares with the others, if it is one of several."""
    path = worker_file(f"{service}_purge_journal")
    return PurgeJournal(path) if path else None
