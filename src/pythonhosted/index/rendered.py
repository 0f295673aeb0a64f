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

Each page is also kept gzipped (made in the same thread, once per rendering), for the
clients that take it, which pip and uv do: a 100,000-file project's 52 MB JSON page (43 MB of
HTML) gzips to 10 MB (9 MB) in about 0.7 s of CPU, where it went whole to every resolver that
asked. Both forms count against the cache's bytes.

A page is rendered and hashed in a thread, one rendering per page and source however many
requests want it: a 100,000-file project's JSON page takes 1.5-3 s of CPU to make, and made
on the event loop (after every upload to the project) it held up every other request of the
process, on every page and service, for that long. The threads are the index's own
(:data:`RENDER_THREADS`, :mod:`pythonhosted.threads`): in asyncio's default pool, a few
large renders held the threads the other services of ``serve`` need for their short I/O.
"""

from __future__ import annotations

import gzip
import hashlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import LRUCache

from pythonhosted.coalesce import Coalescer
from pythonhosted.threads import Workers, computing

T = TypeVar("T")
ENTRY_BYTES = 256  # the key, the weak reference and the entry's objects
# Below one packet's payload a gzipped page saves nothing worth its header and CPU.
GZIP_FROM = 1400
# Renders at once: each is CPU (rendering holds the GIL; hashing and gzip release it), so
# more threads than a small machine's cores only share the same CPU; a render past these
# waits for one to end (distinct pages only: one page renders once however many want it).
RENDER_THREADS = 4


class Source(list[T], Generic[T]):
    """A list a rendering can be made from: a weak reference can point at it."""

    __slots__ = ("__weakref__",)


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    etag: str
    gzipped: bytes | None = None  # None: not worth it (small, or gzip saves too little)

    @property
    def gzipped_etag(self) -> str:
        """The gzipped form's own strong validator (RFC 9110 §8.8.3: one per representation)."""
        return self.etag[:-1] + '-gzip"'


@dataclass(frozen=True, slots=True)
class _Rendering:
    source: weakref.ref[Source[object]]
    page: Page


def _cost(rendering: _Rendering) -> int:
    page = rendering.page
    return ENTRY_BYTES + len(page.body) + (len(page.gzipped) if page.gzipped else 0)


class RenderedPages:
    def __init__(self, max_bytes: int) -> None:
        self._pages: LRUCache[tuple[str, ...], _Rendering] = LRUCache(
            maxsize=max_bytes, getsizeof=_cost
        )
        # (key, id of the source): the rendering under way holds the source, so no other list
        # can have its id meanwhile.
        self._rendering: Coalescer[tuple[tuple[str, ...], int], Page] = Coalescer()
        self.workers = Workers("index-render", RENDER_THREADS)

    async def page(
        self, key: tuple[str, ...], source: list[T], render: Callable[[], bytes]
    ) -> Page:
        """The page ``key`` made from ``source``, rendered now unless it was from this very
        ``source`` before (a plain list, not a :class:`Source`, is rendered every time)."""
        found = self._pages.get(key)
        if found is not None and found.source() is source:
            return found.page
        return await self._rendering.run(
            (key, id(source)), lambda: self._render(key, source, render)
        )

    async def _render(
        self, key: tuple[str, ...], source: list[T], render: Callable[[], bytes]
    ) -> Page:
        page = await self.workers.run(_made, render)
        if isinstance(source, Source):
            rendering = _Rendering(weakref.ref(source), page)
            if _cost(rendering) <= self._pages.maxsize:
                self._pages[key] = rendering
        return page

    @property
    def bytes(self) -> int:
        return int(self._pages.currsize)


def _made(render: Callable[[], bytes]) -> Page:
    with computing():  # one of the process's turns at Python: a render is seconds of it
        body = render()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    if len(body) < GZIP_FROM:
        return Page(body, etag)
    gzipped = gzip.compress(body, compresslevel=6, mtime=0)
    return Page(body, etag, gzipped if len(gzipped) < len(body) * 0.9 else None)
