"""The disk tier: one file per image in a slot directory this process owns, LRU by bytes.

Hand-written rather than diskcache (evaluated): diskcache keeps its index in SQLite, so its
least-recently-used policy writes a row on every read, and every get or set may wait on a
lock another worker holds, inside the event loop; its size limit is enforced by culling a few
items per ``set``, so the bound is approximate; values are copied into it whole, where camo
streams a body to the client and the disk at once; and it stores no checksum, so a file left
half-written by a power cut would be served. Here:

- each worker process owns one slot directory (an ``flock`` on ``slot-N.lock``, released by
  the kernel when the process dies, so a restarted worker takes the slot over) with an equal
  share of the byte budget: the bound holds however many workers run, and no two processes
  ever write the same files;
- the index (key -> bytes charged) lives in memory, least recently used first; it is rebuilt
  at start from the files (oldest modification first), and every entry charges its size in
  whole 4 KB blocks, as the disk holds it, so the number of entries, and the index's memory
  (about 300 bytes an entry), is bounded too;
- a body being written is charged as it grows, older entries evicted to make room for it: the
  bound holds at every moment, however many images are being stored at once (a temporary file
  the budget has no room for is given up, the image relayed without being kept);
- a slot that a start with fewer workers no longer claims is emptied by the first process to
  start, so its files do not hold disk outside every budget;
- a file is written under a temporary name and renamed into place once complete; its footer
  and checksum (:mod:`.entry`) are verified before the first use after a start, so a crash at
  any moment never leads to a cut or damaged image being served (an unfinished file has no
  footer and is deleted). There is no fsync: a cache may lose entries in a power cut, which
  only costs a refetch, and what survives is verified before use.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import re
import shutil
import zlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from pythonhosted.camo.cache.entry import FOOTER, MAGIC, DamagedEntry, Entry

log = logging.getLogger(__name__)

BLOCK = 4096  # the least an entry is charged: a file costs a block however small
READ_CHUNK = 64 * 1024
_TEMP_PREFIX = ".tmp-"
_SLOT_DIR = re.compile(r"slot-(\d+)")
_counter = itertools.count()


class CacheDirBusy(OSError):
    """Every slot of the cache directory is held by another process."""


class NoRoom(Exception):
    """The budget cannot hold a body being written, even with every other entry evicted
    (the bodies being written at the same time hold the rest)."""


def charge(size: int) -> int:
    """The bytes a file of ``size`` holds on disk: whole blocks, at least one."""
    return max(BLOCK, -(-size // BLOCK) * BLOCK)


@dataclass(slots=True)  # a million entries: no per-record __dict__
class _Record:
    charge: int
    verified: bool  # checksum checked (or written by this process)
    refreshed: Entry | None = None  # freshness after a revalidation, newer than the file's


class DiskTier:
    def __init__(self, root: Path, max_bytes: int, slots: int = 1) -> None:
        self.root = root
        self.max_bytes = max_bytes // max(1, slots)
        self._slots = max(1, slots)
        self._index: OrderedDict[str, _Record] = OrderedDict()
        self.bytes = 0  # entries' charges, and what the bodies being written hold
        self._writing = 0  # of which the bodies being written
        self.damaged = 0  # entries found damaged and dropped
        self.evictions = 0
        self._lock: BinaryIO | None = None
        self.dir = root

    # -- life cycle --

    def open(self) -> None:
        """Claim a slot and index what a previous process left in it (blocking: run it
        before serving or in a thread)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for slot in range(self._slots):
            lock = (self.root / f"slot-{slot}.lock").open("ab")
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            self._lock = lock
            self.dir = self.root / f"slot-{slot}"
            break
        else:
            raise CacheDirBusy(f"cache dir {self.root}: all {self._slots} slot(s) are in use")
        self.dir.mkdir(exist_ok=True)
        self._empty_unclaimed_slots()
        self._scan()

    def _empty_unclaimed_slots(self) -> None:
        """Delete the slots beyond this start's count (an earlier start had more workers):
        no process of this count will ever claim them, and their files would stay on disk
        outside every slot's share. One still locked is in use by an older process."""
        for path in self.root.iterdir():
            match = _SLOT_DIR.fullmatch(path.name)
            if match is None or int(match[1]) < self._slots or not path.is_dir():
                continue
            with (self.root / f"slot-{match[1]}.lock").open("ab") as lock:
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                shutil.rmtree(path, ignore_errors=True)
                log.info("camo cache: emptied %s (no worker of this start claims it)", path)

    @property
    def opened(self) -> bool:
        return self._lock is not None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _scan(self) -> None:
        found: list[tuple[float, str, int]] = []
        for sub in self.dir.iterdir():
            if not sub.is_dir():
                continue
            for path in sub.iterdir():
                if path.name.startswith(_TEMP_PREFIX):
                    path.unlink(missing_ok=True)  # a write that never finished
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found.append((stat.st_mtime, path.name, stat.st_size))
        found.sort()
        for _, key, size in found:
            self._index[key] = _Record(charge(size), verified=False)
            self.bytes += charge(size)
        del found
        self._evict()

    # -- reading --

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / key

    def describe(self, key: str) -> tuple[Entry, BinaryIO] | None:
        """The entry's description and its file, open at the body's start (the caller closes
        it); None if absent. DamagedEntry (the entry is dropped) if the file is not whole."""
        record = self._index.get(key)
        if record is None:
            return None
        try:
            file = self.path(key).open("rb")
        except FileNotFoundError:
            self._forget(key)
            return None
        try:
            entry = self._read_description(file)
        except DamagedEntry:
            file.close()
            self.drop_damaged(key)
            raise
        self._index.move_to_end(key)
        if record.refreshed is not None:
            entry = replace(record.refreshed)
        file.seek(0)
        return entry, file

    @staticmethod
    def _read_description(file: BinaryIO) -> Entry:
        size = os.fstat(file.fileno()).st_size
        if size < FOOTER.size:
            raise DamagedEntry("no footer")
        file.seek(size - FOOTER.size)
        length, magic = FOOTER.unpack(file.read(FOOTER.size))
        if magic != MAGIC or length > size - FOOTER.size:
            raise DamagedEntry("no footer")
        file.seek(size - FOOTER.size - length)
        entry = Entry.from_description(file.read(length))
        if entry.length != size - FOOTER.size - length:
            raise DamagedEntry("body length does not match")
        return entry

    def needs_check(self, key: str) -> bool:
        record = self._index.get(key)
        return record is not None and not record.verified

    def check(self, key: str, entry: Entry, file: BinaryIO) -> None:
        """Verify the body's checksum (once per entry and process start); DamagedEntry and
        the entry dropped if it does not match. Leaves the file at the body's start."""
        crc = 0
        left = entry.length
        while left:
            chunk = file.read(min(READ_CHUNK, left))
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
        file.seek(0)
        if left or crc != entry.crc:
            self.drop_damaged(key)
            raise DamagedEntry("checksum does not match")
        record = self._index.get(key)
        if record is not None:
            record.verified = True

    # -- writing --

    def writer(self, key: str) -> DiskWriter:
        return DiskWriter(self, key)

    def _reserve(self, more: int) -> None:
        """Charge ``more`` bytes for a body being written, evicting the least recently used
        entries to make room; NoRoom (nothing charged) if even that cannot."""
        if self._writing + more > self.max_bytes:  # not even with every entry evicted
            raise NoRoom(f"no room in {self.max_bytes} bytes for {more} more")
        self.bytes += more
        self._writing += more
        self._evict()

    def _release(self, held: int) -> None:
        self.bytes -= held
        self._writing -= held

    def _commit(self, key: str, temp: Path, held: int) -> None:
        """Put a finished file in place; ``held`` is what its writer charged (its size)."""
        final = self.path(key)
        os.replace(temp, final)
        self._forget(key)  # the old file's bytes were freed by the replace
        self._writing -= held  # the entry's charge from now on
        self._index[key] = _Record(held, verified=True)

    def refresh(self, key: str, entry: Entry) -> None:
        """Remember newer freshness for an entry (a 304); the file keeps its body."""
        record = self._index.get(key)
        if record is not None:
            record.refreshed = replace(entry, body=None)  # the index holds no bodies

    def drop(self, key: str) -> bool:
        """Delete one entry; whether there was one."""
        if key not in self._index:
            return False
        self._forget(key)
        self.path(key).unlink(missing_ok=True)
        return True

    def forget_all(self) -> list[Path]:
        """Forget every entry at once (another worker's purges were missed: which ones is
        unknown); the files to delete, left to the caller, off the event loop."""
        doomed = [self.path(key) for key in self._index]
        self._index.clear()
        self.bytes = self._writing
        return doomed

    def drop_damaged(self, key: str) -> None:
        self.damaged += 1
        log.warning("camo cache: dropped damaged entry %s", key)
        self.drop(key)

    def _forget(self, key: str) -> None:
        record = self._index.pop(key, None)
        if record is not None:
            self.bytes -= record.charge

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self._index:
            self.drop(next(iter(self._index)))
            self.evictions += 1


class DiskWriter:
    """A body being written to a temporary file, renamed into place by :meth:`commit`;
    charged to the tier's budget as it grows (NoRoom from :meth:`write` or :meth:`commit` when
    the budget cannot hold it: :meth:`abort` then)."""

    def __init__(self, tier: DiskTier, key: str) -> None:
        self._tier = tier
        self._key = key
        folder = tier.path(key).parent
        folder.mkdir(exist_ok=True)
        self._temp = folder / f"{_TEMP_PREFIX}{key}-{os.getpid()}-{next(_counter)}"
        self._file: BinaryIO | None = self._temp.open("wb")
        self.length = 0
        self.crc = 0
        self._held = 0  # bytes charged to the tier for the file so far

    def _hold(self, size: int) -> None:
        """Charge the tier for a file of ``size`` bytes, before it grows to that."""
        needed = charge(size)
        if needed > self._held:
            self._tier._reserve(needed - self._held)
            self._held = needed

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._hold(self.length + len(chunk))
        self._file.write(chunk)
        self.length += len(chunk)
        self.crc = zlib.crc32(chunk, self.crc)

    def commit(self, entry: Entry) -> None:
        """Finish the file with ``entry``'s description and put it in place."""
        assert self._file is not None
        description = entry.describe()
        self._hold(self.length + len(description) + FOOTER.size)
        self._file.write(description)
        self._file.write(FOOTER.pack(len(description), MAGIC))
        self._file.close()
        self._file = None
        self._tier._commit(self._key, self._temp, self._held)
        self._held = 0  # now the entry's, in the index

    def abort(self) -> None:
        """Drop the temporary file (also after a commit that failed before its rename)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)
        self._tier._release(self._held)
        self._held = 0
