"""Whole bodies of small objects kept in memory (files-edge rules 18-19).

Objects behind hashed paths never change, so a cached body never needs revalidation: only
PURGE removes one. Small objects are the ones worth it: for them the fixed cost of a store
round trip (or of the server opening a file) dominates, and PEP 658 ``.metadata`` files, small
sdists and wheels are most of the requests. Bounded by total bytes, least recently used first out.
"""

from __future__ import annotations

from collections import OrderedDict


class BodyCache:
    def __init__(self, max_bytes: int, max_object_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_object_bytes = min(max_object_bytes, max_bytes)
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def fits(self, size: int) -> bool:
        return size <= self.max_object_bytes

    def get(self, key: str) -> bytes | None:
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
        return body

    def put(self, key: str, body: bytes) -> None:
        if not self.fits(len(body)) or key in self._bodies:
            return
        self._bodies[key] = body
        self._size += len(body)
        while self._size > self.max_bytes:
            _, evicted = self._bodies.popitem(last=False)
            self._size -= len(evicted)

    def discard(self, key: str) -> None:
        body = self._bodies.pop(key, None)
        if body is not None:
            self._size -= len(body)

    @property
    def size(self) -> int:
        return self._size
