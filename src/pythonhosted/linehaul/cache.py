"""A bounded memo for the parser's per-string caches (user agents, timestamps).

A dict subclass whose ``__missing__`` computes and stores the value, so a hit is one C-level
subscript, cheaper than a ``functools.lru_cache`` call. When full it drops the oldest entry
(first in, first out): an LRU's bookkeeping on every hit costs more than the occasional
recomputation of a popular key that FIFO causes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    """``memo[key]`` is ``compute(key)``, remembered for the last ``size`` distinct keys.

    Exceptions from ``compute`` propagate and nothing is stored.
    """

    def __init__(self, compute: Callable[[K], V], size: int) -> None:
        super().__init__()
        self._compute = compute
        self._size = size

    def __missing__(self, key: K) -> V:
        value = self._compute(key)
        if len(self) >= self._size:
            del self[next(iter(self))]
        self[key] = value
        return value
