"""The index's catalog cache: bounded in bytes and entries, expiring, one read per miss.

Before, every requested name stayed cached forever (3,000 unknown names made 3,000 entries)
and a burst for one uncached project read the catalog once per request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from pythonhosted.catalog import CatalogWatch, mark_changed, record_key
from pythonhosted.files.upload import upload
from pythonhosted.index.app import IndexApp, IndexOptions
from pythonhosted.index.cached_catalog import ENTRY_BYTES, CatalogPages
from pythonhosted.samples import build_wheel
from pythonhosted.storage import Store, open_store
from pythonhosted.storage.stores import Listed
from pythonhosted.web.server import running
from support.metrics import sample


class CountingStore:
    """A store that counts catalog listings (everything else goes straight through)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.listings: list[str] = []

    async def list(self, prefix: str) -> list[Listed]:
        self.listings.append(prefix)
        await asyncio.sleep(0.05)  # a slow store: concurrent misses overlap for sure
        return await self._store.list(prefix)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


async def _flood(base_url: str, names: list[str], concurrency: int = 32) -> list[int]:
    statuses: list[int] = []
    queue = list(reversed(names))
    async with httpx.AsyncClient(base_url=base_url) as client:

        async def worker() -> None:
            while queue:
                response = await client.get(f"/simple/{queue.pop()}/")
                statuses.append(response.status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def test_a_flood_of_unknown_names_stays_within_the_bound(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/primary")
    bound = 50 * ENTRY_BYTES
    app = IndexApp(store, None, IndexOptions(cache_ttl=600, cache_max_bytes=bound))
    with running(app.service()) as url:
        statuses = asyncio.run(_flood(url, [f"no-such-{n}" for n in range(3_000)]))
        assert statuses == [404] * 3_000
        assert sample(url, "index_cache_entries") == 50
        assert sample(url, "index_cache_bytes") == bound


def test_concurrent_misses_for_one_name_read_the_catalog_once(tmp_path: Path) -> None:
    primary = open_store(f"file://{tmp_path}/primary")
    asyncio.run(upload(primary, *build_wheel("Burst", "1.0")))
    store = CountingStore(primary)
    app = IndexApp(store, None, IndexOptions(cache_ttl=600))  # type: ignore[arg-type]
    with running(app.service()) as url:
        statuses = asyncio.run(_flood(url, ["burst"] * 500, concurrency=100))
        assert statuses == [200] * 500
        assert store.listings == ["catalog/burst/"]
        asyncio.run(_flood(url, ["no-such"] * 200, concurrency=100))
        assert store.listings == ["catalog/burst/", "catalog/no-such/"]


def test_the_root_listing_is_cached_for_the_ttl_too(tmp_path: Path) -> None:
    primary = open_store(f"file://{tmp_path}/primary")
    asyncio.run(upload(primary, *build_wheel("Root", "1.0")))
    store = CountingStore(primary)
    app = IndexApp(store, None, IndexOptions(cache_ttl=600))  # type: ignore[arg-type]
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        for _ in range(100):
            assert 'href="/simple/root/"' in client.get("/simple/").text
        assert store.listings == ["catalog/"]


class SlowFirstRead:
    """A store whose first catalog record read is slow: a page read that began before a change
    ends after it, with what it read before."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.delays = [0.5]

    async def get_bytes(self, key: str) -> bytes:
        data = await self._store.get_bytes(key)
        if key.startswith("catalog/") and self.delays:
            await asyncio.sleep(self.delays.pop())
        return data

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_a_read_from_before_a_change_is_not_kept(tmp_path: Path) -> None:
    """A request that began reading before a delete answers with what it read; the page kept
    and given to every later request is the one read after the change."""
    primary = open_store(f"file://{tmp_path}/primary")
    old, new = build_wheel("Race", "1.0"), build_wheel("Race", "2.0")
    for wheel in (old, new):
        asyncio.run(upload(primary, *wheel))
    store = SlowFirstRead(primary)
    pages = CatalogPages(store, ttl=600, max_bytes=2**20, watch=CatalogWatch(store, interval=0))  # type: ignore[arg-type]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        early = asyncio.create_task(pages.records("race"))  # reads, then waits 0.5 s
        await asyncio.sleep(0.1)
        await primary.delete(record_key("race", old[0]))
        await mark_changed(primary)
        after = await pages.records("race")  # sees the change: reads again, not joining
        stale = await early
        later = await pages.records("race")
        return [r.filename for r in stale], [r.filename for r in after], [r.filename for r in later]

    stale, after, later = asyncio.run(scenario())
    assert stale == [old[0], new[0]]
    assert after == later == [new[0]]
