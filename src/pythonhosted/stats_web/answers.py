"""Whole answers kept per data version, bounded in entries and bytes (least recently used
goes first).

An entry is charged for its key too: the key holds the request's path and the values of the
parameters its route reads, which a client chooses (a search term of kilobytes), and 20,000
answers of a few hundred bytes under 7 KB query strings held about 230 MB against a 64 MB
budget when only bodies counted.

Keys and entries are plain tuples of strings, bytes, numbers and dates, which CPython's
garbage collector stops tracking after their first collection: a full collection runs on
the event loop and walks every object it tracks, and 200,000 cached answers as objects (a
dataclass each, and its entry tuple) made it 109 ms of CPU instead of 9.5 ms (as plain
tuples: BENCHMARKS.md). A publish replaces the entries that read what it changed, which
is what triggers full collections.

An entry of an older data version is served when nothing it read changed since
(:meth:`.changes.Changes.kept`): it is then marked with the current version, its body and
ETag as they were.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import NamedTuple

from pythonhosted.stats_web.changes import ANY, EVERY_DAY, Changes

# What an entry holds besides its body and the key's text: its tuple, the ETag, the key's
# tuple and the dict's node (measured with tracemalloc: ~270 bytes, and the key's objects).
ENTRY_BYTES = 512


class Answer(NamedTuple):
    status: int
    body: bytes
    content_type: bytes
    etag: str
    version: int
    # What it read (.changes.Reads); by default everything, so a publish replaces it.
    last_day: int = EVERY_DAY
    uploads: bool = True
    volatile: bool = True
    watermark: datetime | None = None  # the one it shows
    project: str | None = ANY  # whose downloads it read


# What the cache holds: an Answer's fields with the entry's weight after its version, as a
# plain tuple (a subclass of tuple, like Answer, stays tracked by the collector).
_Entry = tuple[int, bytes, bytes, str, int, int, int, bool, bool, datetime | None, str | None]


def weight(key: tuple[object, ...], answer: Answer) -> int:
    """Estimated bytes ``answer`` holds in the cache under ``key``."""
    text = sum(len(part) for part in key if isinstance(part, str | bytes))
    return ENTRY_BYTES + text + len(answer.body)


class AnswerCache:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.kept = 0  # entries carried over to a newer data version
        self._entries: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self,
        key: tuple[object, ...],
        version: int,
        changes: Changes | None = None,
        watermark: datetime | None = None,
    ) -> Answer | None:
        """The answer of ``version``: cached under it, or under an older one of which
        nothing it read changed since, by ``changes``, and whose watermark (if it shows one)
        is ``watermark``, the current one."""
        found = self._entries.get(key)
        if found is None:
            return None
        if found[4] != version:
            if changes is None or not changes.kept(
                found[4], version, *found[6:10], watermark, project=found[10]
            ):
                return None
            found = (*found[:4], version, *found[5:])
            self._entries[key] = found
            self.kept += 1
        self._entries.move_to_end(key)
        return Answer(*found[:5], *found[6:])

    def put(self, key: tuple[object, ...], answer: Answer) -> None:
        size = weight(key, answer)
        if size > self.max_bytes or self.max_entries == 0:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[5]
        self._entries[key] = (*answer[:5], size, *answer[5:])
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped[5]
