"""Bodies of small objects, and byte ranges clients repeat, kept in memory (rules 18-19).

Objects behind hashed paths never change, so a cached body never needs revalidation: only
PURGE removes one, with every range cached from it. Small objects are the ones worth it: for
them the fixed cost of a store round trip (or of the server opening a file) dominates, and PEP
658 ``.metadata`` files, small sdists and wheels are most of the requests; installers also read
the same tail of a large wheel (its zip directory) over and over. Bounded by total bytes, least
recently used first out; each entry is charged its bookkeeping too (``ENTRY_BYTES``), so a
client asking for millions of distinct one-byte ranges fills the budget, not the memory.

Hand-made on an OrderedDict rather than cachetools (which the caches off the hot path use):
it is read on every cached GET, and a lookup measured 0.35 us here against 1.1-1.25 us for
cachetools' LRUCache (1M lookups in 20,000 entries, same run).
"""

from __future__ import annotations

from collections import OrderedDict

# The memory of one entry besides its body: the span tuple, the OrderedDict node, the set
# entry and the bytes object's header (measured with tracemalloc at about 290 bytes).
ENTRY_BYTES = 320


class Pieces:
    """A large body kept as the pieces it goes out in, split once when it is cached.

    Sending a piece of one big ``bytes`` object needs a copy in Python (the server only takes
    ``bytes``), for every response; with the pieces stored, a whole body goes out with no copy
    on our side. Ranges slice the few pieces they cover. The first ``head_bytes`` are also kept
    cut in ``head_piece`` parts (what a client that has not shown it reads fast gets:
    ``pythonhosted.web.objects``): cut per response, 1,000 slow readers' slices left the
    allocator's heap 19 MB larger after they left.
    """

    __slots__ = ("head", "parts", "piece", "size")

    def __init__(self, data: bytes, piece: int, head_piece: int = 0, head_bytes: int = 0) -> None:
        self.piece = piece
        self.parts = tuple(data[offset : offset + piece] for offset in range(0, len(data), piece))
        self.size = len(data)
        first = data[: min(head_bytes, piece)] if head_piece > 0 else b""
        self.head = tuple(
            first[at : at + head_piece] for at in range(0, len(first), head_piece or 1)
        )

    def __len__(self) -> int:
        return self.size

    @property
    def held(self) -> int:
        """The bytes it keeps: the body and its head's second cut."""
        return self.size + sum(map(len, self.head))

    def part_end(self, offset: int) -> int:
        """Where the stored piece holding byte ``offset`` ends."""
        return min((offset // self.piece + 1) * self.piece, self.size)

    def slice(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``: a stored piece (or head part) itself when they are one."""
        piece, parts = self.piece, self.parts
        first, last = start // piece, (end - 1) // piece
        if first == last:
            cut = self.head
            if first == 0 and cut:
                index = start // len(cut[0])
                if index < len(cut) and start == index * len(cut[0]):
                    part = cut[index]
                    if end == start + len(part):
                        return part
            return parts[first][start - first * piece : end - first * piece]
        head, tail = parts[first][start - first * piece :], parts[last][: end - last * piece]
        return b"".join((head, *parts[first + 1 : last], tail))


def held(body: Body) -> int:
    """The memory a cached body is charged for."""
    return body.held if isinstance(body, Pieces) else len(body)


Body = bytes | Pieces


class BodyCache:
    def __init__(
        self, max_bytes: int, max_object_bytes: int, entry_bytes: int = ENTRY_BYTES
    ) -> None:
        self.max_bytes = max_bytes
        self.entry_bytes = entry_bytes
        self.max_object_bytes = min(max_object_bytes, max_bytes)
        self._bodies: OrderedDict[tuple[str, int, int], Body] = OrderedDict()
        self._spans: dict[str, set[tuple[str, int, int]]] = {}  # object key -> cached spans
        self._size = 0

    def fits(self, size: int) -> bool:
        return size <= self.max_object_bytes

    def get(self, key: str, start: int = 0, end: int = -1) -> Body | None:
        """The cached bytes of ``key`` (the whole object by default, else ``[start, end)``)."""
        span = (key, start, end)
        body = self._bodies.get(span)
        if body is not None:
            self._bodies.move_to_end(span)
        return body

    def put(self, key: str, body: Body, start: int = 0, end: int = -1) -> None:
        span = (key, start, end)
        if not self.fits(len(body)) or span in self._bodies:
            return
        self._bodies[span] = body
        self._spans.setdefault(key, set()).add(span)
        self._size += held(body) + self.entry_bytes
        while self._size > self.max_bytes:
            evicted, data = self._bodies.popitem(last=False)
            self._forget_span(evicted, data)

    def clear(self) -> None:
        """Forget every body and range."""
        self._bodies.clear()
        self._spans.clear()
        self._size = 0

    def discard(self, key: str) -> None:
        """Forget the object and every range cached from it (a purge)."""
        for span in self._spans.get(key, set()).copy():
            self._forget_span(span, self._bodies.pop(span))

    def _forget_span(self, span: tuple[str, int, int], data: Body) -> None:
        self._size -= held(data) + self.entry_bytes
        spans = self._spans[span[0]]
        spans.discard(span)
        if not spans:
            del self._spans[span[0]]

    @property
    def size(self) -> int:
        return self._size

    @property
    def entries(self) -> int:
        return len(self._bodies)
