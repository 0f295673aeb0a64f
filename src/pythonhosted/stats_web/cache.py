"""Whole answers kept per data version, bounded in entries and bytes (least recently used
goes first)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: bytes
    etag: str
    version: int


class AnswerCache:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[object, ...], Answer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[object, ...], version: int) -> Answer | None:
        found = self._entries.get(key)
        if found is None or found.version != version:
            return None
        self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[object, ...], answer: Answer) -> None:
        size = len(answer.body)
        if size > self.max_bytes or self.max_entries == 0:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(old.body)
        self._entries[key] = answer
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= len(dropped.body)
