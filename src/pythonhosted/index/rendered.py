"""One rendering of each page, shared by every request for it while its source is current.

A page used to be rendered and hashed for each request, and each response held its own
copy: a project with 50,000 files is a 24 MB page (10 s to render on a loaded machine), and
40 clients reading it slowly held 890 MB. Now a page is rendered once from the catalog
records the cache holds, and requests share those bytes (sent in pieces, so a connection
holds only what the server queues).

A rendering is valid while the list it was made from is the one the catalog cache still
hands out: it refers to that list weakly, so when the catalog cache drops or replaces the
records (a change, the TTL, eviction), the rendering is stale and the list is not kept
alive by it. Renderings are bounded in bytes, least recently used out first.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import LRUCache

T = TypeVar("T")
ENTRY_BYTES = 256  # the key, the weak reference and the entry's objects


class Source(list[T], Generic[T]):
    """A list a rendering can be made from: a weak reference can point at it."""

    __slots__ = ("__weakref__",)


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    etag: str


@dataclass(frozen=True, slots=True)
class _Rendering:
    source: weakref.ref[Source[object]]
    page: Page


def _cost(rendering: _Rendering) -> int:
    return ENTRY_BYTES + len(rendering.page.body)


class RenderedPages:
    def __init__(self, max_bytes: int) -> None:
        self._pages: LRUCache[tuple[str, ...], _Rendering] = LRUCache(
            maxsize=max_bytes, getsizeof=_cost
        )

    def page(self, key: tuple[str, ...], source: list[T], render: Callable[[], bytes]) -> Page:
        """The page ``key`` made from ``source``, rendered now unless it was from this very
        ``source`` before (a plain list, not a :class:`Source`, is rendered every time)."""
        found = self._pages.get(key)
        if found is not None and found.source() is source:
            return found.page
        body = render()
        page = Page(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        if isinstance(source, Source):
            rendering = _Rendering(weakref.ref(source), page)
            if _cost(rendering) <= self._pages.maxsize:
                self._pages[key] = rendering
        return page

    @property
    def bytes(self) -> int:
        return int(self._pages.currsize)
