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
tuples: BENCHMARKS.md). Each publish replaces every entry, which is what triggers full
collections.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

# What an entry holds besides its body and the key's text: its tuple, the ETag, the key's
# tuple and the dict's node (measured with tracemalloc: ~270 bytes, and the key's objects).
ENTRY_BYTES = 512


class Answer(NamedTuple):
    status: int
    body: bytes
    content_type: bytes
    etag: str
    version: int


# What the cache holds: an Answer's fields and the entry's weight, as a plain tuple (a
# subclass of tuple, like Answer, stays tracked by the collector).
_Entry = tuple[int, bytes, bytes, str, int, int]


def weight(key: tuple[object, ...], answer: Answer) -> int:
    """Estimated bytes ``answer`` holds in the cache under ``key``."""
    text = sum(len(part) for part in key if isinstance(part, str | bytes))
    return ENTRY_BYTES + text + len(answer.body)


class AnswerCache:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[object, ...], version: int) -> Answer | None:
        found = self._entries.get(key)
        if found is None or found[4] != version:
            return None
        self._entries.move_to_end(key)
        return Answer(found[0], found[1], found[2], found[3], found[4])

    def put(self, key: tuple[object, ...], answer: Answer) -> None:
        size = weight(key, answer)
        if size > self.max_bytes or self.max_entries == 0:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[5]
        self._entries[key] = (*answer, size)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped[5]
