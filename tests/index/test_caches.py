"""The index's catalog cache: bounded in bytes and entries, expiring, one read per miss.

Before, every requested name stayed cached forever (3,000 unknown names made 3,000 entries)
and a burst for one uncached project read the catalog once per request.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from pathlib import Path

import httpx
import pytest

from pythonhosted.catalog import (
    CHANGES_KEPT,
    CHANGES_PREFIX,
    CLOCK_SKEW,
    PREFIX,
    CatalogWatch,
    Changes,
    FileRecord,
    mark_changed,
    record_key,
)
from pythonhosted.files.manage import delete
from pythonhosted.files.upload import upload
from pythonhosted.index.app import IndexApp, IndexOptions
from pythonhosted.index.cached_catalog import ENTRY_BYTES, RECORD_BYTES, CatalogPages
from pythonhosted.samples import build_wheel
from pythonhosted.storage import Store, open_store
from pythonhosted.storage.stores import Listed
from pythonhosted.web.server import running
from support.catalogs import CountingReads, put_catalog, record
from support.flood import fetch_all
from support.metrics import sample
from support.processes import wait_until


class CountingStore:
    """A store that counts catalog listings, whole or of the first entries (everything else
    goes straight through; the change markers' listings are not counted)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.listings: list[str] = []
        self.marker_listings = 0  # whole listings of the change markers (the pruning's)

    async def list(self, prefix: str, *, after: str | None = None) -> list[Listed]:
        if prefix.startswith(PREFIX):
            self.listings.append(prefix)
            await asyncio.sleep(0.05)  # a slow store: concurrent misses overlap for sure
        elif after is None:
            self.marker_listings += 1
        return await self._store.list(prefix, after=after)

    async def list_names(self, prefix: str, **options: bool) -> list[str]:
        self.listings.append(prefix)
        await asyncio.sleep(0.05)
        return await self._store.list_names(prefix, **options)

    async def has_any(self, prefix: str) -> bool:
        self.listings.append(prefix)  # (the first entry of a listing)
        return await self._store.has_any(prefix)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


async def _flood(base_url: str, names: list[str], concurrency: int = 32) -> list[int]:
    paths = [f"/simple/{name}/" for name in names]
    answers = await fetch_all(base_url, paths, concurrency=concurrency)
    return [answer.status for answer in answers]


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
        assert _of_projects(store.listings) == ["catalog/burst/"]
        asyncio.run(_flood(url, ["no-such"] * 200, concurrency=100))
        assert _of_projects(store.listings) == ["catalog/burst/", "catalog/no-such/"]


def _of_projects(listings: list[str]) -> list[str]:
    """The listings of projects, not the root list's walk (the index's keeper makes one at
    its start)."""
    return [prefix for prefix in listings if prefix != "catalog/"]


def test_the_root_listing_is_cached_for_the_ttl_too(tmp_path: Path) -> None:
    primary = open_store(f"file://{tmp_path}/primary")
    asyncio.run(upload(primary, *build_wheel("Root", "1.0")))
    store = CountingStore(primary)
    app = IndexApp(store, None, IndexOptions(cache_ttl=600))  # type: ignore[arg-type]
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        for _ in range(100):
            assert 'href="/simple/root/"' in client.get("/simple/").text
        assert store.listings == ["catalog/"]


class ManyNames:
    """A catalog of ``count`` projects as the root page sees it (its one delimiter listing),
    counting the listings; everything else goes straight through."""

    def __init__(self, store: Store, count: int) -> None:
        self._store = store
        self.names = [f"project-{number:06d}" for number in range(count)]
        self.listings = 0

    async def list_names(self, prefix: str, **options: bool) -> list[str]:
        self.listings += 1
        return list(self.names)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_a_large_catalog_is_not_listed_again_at_every_ttl(tmp_path: Path) -> None:
    """Listing a million projects took 14-24 s of CPU, and the root page listed the whole
    catalog again at every ``cache_ttl`` (and rendered the new list again), though changes
    show through the markers within a second. 100,000 projects: kept 100 s, not the ttl."""
    store = ManyNames(open_store(f"file://{tmp_path}/primary"), 100_000)
    app = IndexApp(store, None, IndexOptions(cache_ttl=0.05))  # type: ignore[arg-type]
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        for _ in range(4):
            began = time.monotonic()
            assert client.get("/simple/").text.count('<a href="/simple/') == 100_000
            wait_until(lambda after=began + 0.1: time.monotonic() > after)  # past the ttl
    assert store.listings == 1


class SlowFirstRead:
    """A store whose first catalog record read is slow: a page read that began before a change
    ends after it, with what it read before."""

    def __init__(self, store: Store, records: int) -> None:
        self._store = store
        self.delays = [0.5]
        self.records = records
        self.all_read = asyncio.Event()  # set once every record's bytes are read

    async def get_bytes(self, key: str) -> bytes:
        data = await self._store.get_bytes(key)
        if key.startswith("catalog/"):
            self.records -= 1
            if self.records == 0:
                self.all_read.set()
            if self.delays:
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
    store = SlowFirstRead(primary, records=2)
    pages = CatalogPages(store, ttl=600, max_bytes=2**20, watch=CatalogWatch(store, interval=0))  # type: ignore[arg-type]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        early = asyncio.create_task(pages.records("race"))  # reads, then waits 0.5 s
        await store.all_read.wait()  # (a fixed 0.1 s was too short on a loaded machine)
        await primary.delete(record_key("race", old[0]))
        await mark_changed(primary, ["race"])
        after = await pages.records("race")  # sees the change: reads again, not joining
        stale = await early
        later = await pages.records("race")
        return [r.filename for r in stale], [r.filename for r in after], [r.filename for r in later]

    stale, after, later = asyncio.run(scenario())
    assert stale == [old[0], new[0]]
    assert after == later == [new[0]]


def _project_names(client: httpx.Client) -> list[str]:
    page = client.get("/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    return [project["name"] for project in page.json()["projects"]]


def test_a_change_drops_only_the_changed_projects_page(tmp_path: Path) -> None:
    """On a busy index every few seconds brings an upload: each used to empty the whole cache.
    Now the changed project's page is read again and every other stays cached."""
    primary = open_store(f"file://{tmp_path}/primary")
    for project in ("Changing", "Steady"):
        asyncio.run(upload(primary, *build_wheel(project, "1.0")))
    store = CountingStore(primary)
    app = IndexApp(store, None, IndexOptions(cache_ttl=600))  # type: ignore[arg-type]
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        for project in ("changing", "steady"):
            assert client.get(f"/simple/{project}/").status_code == 200
        asyncio.run(upload(primary, *build_wheel("Changing", "2.0")))
        wait_until(lambda: "changing-2.0" in client.get("/simple/changing/").text)
        for _ in range(20):
            assert "steady-1.0" in client.get("/simple/steady/").text
        assert store.listings.count("catalog/steady/") == 1
        assert store.listings.count("catalog/changing/") == 2


def test_the_root_page_follows_uploads_and_deletes_without_listing_the_catalog_again(
    tmp_path: Path,
) -> None:
    """3,000 projects, then 50 new ones and the only file of another deleted: the root page
    shows all of it within a second, from one small listing per changed project."""
    primary = open_store(f"file://{tmp_path}/primary")

    async def put_records() -> None:  # records as uploads write them, without 3,000 wheels
        for number in range(3_000):
            record = FileRecord(
                *(f"p{number}-1.0-py3-none-any.whl", f"/packages/aa/bb/{'c' * 60}/p{number}.whl"),
                *(f"p{number}", "1.0", "bdist_wheel", "py3", 10, "0" * 64, "0" * 64, "2026-12-05"),
            )
            await primary.put(record_key(record.project, record.filename), record.to_json())

    asyncio.run(put_records())
    gone = asyncio.run(upload(primary, *build_wheel("Gone", "1.0")))
    store = CountingStore(primary)
    app = IndexApp(store, None, IndexOptions(cache_ttl=600))  # type: ignore[arg-type]
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert len(_project_names(client)) == 3_001
        new = [f"new-{number}" for number in range(50)]
        for project in new:
            asyncio.run(upload(primary, *build_wheel(project, "1.0")))
        asyncio.run(delete(primary, None, [(gone, gone.path)]))
        expected = sorted([*(f"p{number}" for number in range(3_000)), *new])
        wait_until(lambda: sorted(_project_names(client)) == expected)
        assert store.listings.count("catalog/") == 1
        assert sorted(p for p in store.listings if p != "catalog/") == sorted(
            f"catalog/{project}/" for project in [*new, "gone"]
        )


def test_change_markers_written_by_a_slow_clock_are_still_seen(tmp_path: Path) -> None:
    """Writers on other machines stamp markers with their own clocks: one stamped up to
    CLOCK_SKEW before the newest already seen is still reported, once."""
    store = open_store(f"file://{tmp_path}/primary")
    watch = CatalogWatch(store, interval=0)

    async def scenario() -> list[Changes]:
        now = time.time_ns()
        seen = [await watch.changes()]  # the first look learns where the markers stand
        await store.put(f"{CHANGES_PREFIX}{now:020d}-aaaaaaaaaaaa-prompt", b"")
        seen.append(await watch.changes())
        late = now - int((CLOCK_SKEW - 5) * 1e9)
        await store.put(f"{CHANGES_PREFIX}{late:020d}-bbbbbbbbbbbb-late-clock", b"")
        await store.put(f"{CHANGES_PREFIX}not-a-marker", b"")  # someone else's: left alone
        seen.append(await watch.changes())
        seen.append(await watch.changes())
        return seen

    assert [changes.projects for changes in asyncio.run(scenario())] == [
        frozenset(),
        frozenset({"prompt"}),
        frozenset({"late-clock"}),
        frozenset(),
    ]


def test_markers_older_than_kept_are_removed_by_the_next_change(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/primary")
    old = time.time_ns() - int((CHANGES_KEPT + 60) * 1e9)

    async def scenario() -> list[str]:
        await store.put(f"{CHANGES_PREFIX}{old:020d}-cccccccccccc-old", b"")
        await mark_changed(store, ["New.Project"])
        listed = await store.list(CHANGES_PREFIX)
        return [item.key[len(CHANGES_PREFIX) :].split("-", 2)[2] for item in listed]

    assert asyncio.run(scenario()) == ["new-project"]  # the old marker gone


def _record(project: str) -> FileRecord:
    filename = f"{project}-1.0-py3-none-any.whl"
    return FileRecord(
        *(filename, f"/packages/aa/bb/{'c' * 60}/{filename}", project, "1.0", "bdist_wheel"),
        *("py3", 10, "0" * 64, "0" * 64, "2026-12-05"),
    )


def test_a_bulk_change_lists_the_catalog_once_instead_of_checking_each_project(
    tmp_path: Path,
) -> None:
    """1,000 new projects at once (a mirror seeding an index): the root page lists the catalog
    again rather than asking about each of them."""
    primary = open_store(f"file://{tmp_path}/primary")
    store = CountingStore(primary)
    app = IndexApp(store, None, IndexOptions(cache_ttl=600))  # type: ignore[arg-type]
    new = [f"bulk-{number}" for number in range(1_000)]

    async def seed() -> None:
        for project in new:
            record = _record(project)
            await primary.put(record_key(record.project, record.filename), record.to_json())
        await mark_changed(primary, new)

    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == []
        asyncio.run(seed())
        wait_until(lambda: len(_project_names(client)) == 1_000)
    assert store.listings == ["catalog/", "catalog/"]


def test_a_bulk_upload_prunes_markers_once_not_at_every_upload(tmp_path: Path) -> None:
    primary = open_store(f"file://{tmp_path}/primary")
    store = CountingStore(primary)
    markers: list[str] = []

    async def scenario() -> None:
        for number in range(2_000):
            await mark_changed(store, [f"p{number}"])  # type: ignore[arg-type]
        markers.extend(item.key for item in await primary.list(CHANGES_PREFIX))

    asyncio.run(scenario())
    assert len(markers) == 2_000
    assert store.marker_listings <= 1


def test_the_cache_charges_at_least_what_a_project_holds(tmp_path: Path) -> None:
    """Long wheel names (manylinux tags) included: a fixed 1,152 bytes a record charged a
    2,000-file project 2.3 MB while it held 2.6 MB, so the bound was not one."""
    store = open_store(f"file://{tmp_path}/primary")
    tags = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"
    asyncio.run(put_catalog(store, "warm-up", 10, tags))
    asyncio.run(put_catalog(store, "nightly", 2_000, tags))
    pages = CatalogPages(store, ttl=600, max_bytes=2**30)

    async def held() -> tuple[int, int]:
        """(bytes the project's records hold, bytes the cache charges for them)."""
        await pages.records("warm-up")  # what the first read allocates once, not counted
        charged_before = pages.bytes
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            records = await pages.records("nightly")
            for _ in range(5):
                await asyncio.sleep(0)  # the read's finished tasks go
            gc.collect()
            assert len(records) == 2_000
            return tracemalloc.get_traced_memory()[0] - before, pages.bytes - charged_before
        finally:
            tracemalloc.stop()

    measured, charged = asyncio.run(held())
    assert pages.entries == 2
    assert measured <= charged < 1.2 * measured


def test_a_project_heavier_than_the_cache_is_served_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not kept, so each request reads it all again: the log tells the operator which
    project and how much memory it needs."""
    primary = open_store(f"file://{tmp_path}/primary")
    asyncio.run(put_catalog(primary, "heavy", 50))
    store = CountingReads(primary)
    app = IndexApp(store, None, IndexOptions(cache_ttl=600, cache_max_bytes=50_000))  # type: ignore[arg-type]
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        for _ in range(2):
            assert client.get("/simple/heavy/").text.count("<a href=") == 50
    assert store.reads == 100
    weight = (
        ENTRY_BYTES
        + 50 * RECORD_BYTES
        + 2 * sum(len(record("heavy", number).filename) for number in range(50))
    )
    expected = (
        f"index cache too small for heavy: its 50 files need ~{weight} bytes, more than "
        "index.cache_max_bytes (50000); each request for it reads it all again"
    )
    assert [r.getMessage() for r in caplog.records].count(expected) == 2


def test_the_root_page_checks_a_changed_large_project_without_listing_its_files(
    tmp_path: Path,
) -> None:
    """Whether a changed project still has files: the first entry of a listing says it (the
    whole listing of a 50,000-file project's records took 0.6 s of CPU)."""
    primary = open_store(f"file://{tmp_path}/primary")
    asyncio.run(put_catalog(primary, "nightly", 3_000))
    store = CountingReads(primary)
    app = IndexApp(store, None, IndexOptions(cache_ttl=600))  # type: ignore[arg-type]
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == ["nightly"]
        asyncio.run(upload(primary, *build_wheel("nightly", "2.0")))
        asyncio.run(upload(primary, *build_wheel("fresh", "1.0")))  # seen with or after it
        wait_until(lambda: _project_names(client) == ["fresh", "nightly"])
    assert store.listed == 0
