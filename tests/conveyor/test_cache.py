"""The JSON lookup cache (spec rule 7): coalescing, freshness, ETag revalidation, bounds."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from pythonhosted.config import ConveyorSettings, FilesSettings, Settings
from pythonhosted.conveyor import build_app
from pythonhosted.conveyor.docs import DocsSite
from pythonhosted.conveyor.jsonapi import freshness
from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.conveyor.redirects import RedirectTable
from pythonhosted.conveyor.resolver import ENTRY_WEIGHT
from pythonhosted.files.upload import upload
from pythonhosted.samples import build_sdist
from pythonhosted.storage import ObjectInfo, Store, open_store
from pythonhosted.storage.stores import COMMAND_TIMEOUTS
from pythonhosted.web.request import Request
from pythonhosted.web.types import ASGIApp, Message, Receive, Scope, Send
from support.conveyor import ConveyorFactory
from support.jsonapi import FakeJsonApi, file_entry

SDIST = "/packages/source/p/popular/popular-1.0.tar.gz"


def metric(base: str, name: str, labels: str = "") -> float:
    text = httpx.get(base + "/metrics").text
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def burst(url: str, count: int) -> list[int]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.get(url, allow_redirects=False) as response:
                return response.status

        return await asyncio.gather(*(one() for _ in range(count)))


def test_concurrent_cold_misses_make_one_upstream_request(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    fake, api_url = api
    fake.projects["popular"] = {"1.0": [file_entry("popular-1.0.tar.gz", "source")]}
    fake.stall["popular"] = 1.0  # keep the one fetch in flight while the burst arrives
    with conveyor(json_api=api_url) as base:
        statuses = asyncio.run(burst(base + SDIST, 1000))
        assert statuses == [302] * 1000
        assert fake.count("popular") == 1
        misses = metric(base, "conveyor_cache_lookups_total", '{result="miss"}')
        joined = metric(base, "conveyor_cache_lookups_total", '{result="coalesced"}')
        hits = metric(base, "conveyor_cache_lookups_total", '{result="hit"}')
        assert misses == 1
        assert joined + hits == 999
        assert metric(base, "conveyor_upstream_requests_total", '{outcome="200"}') == 1


def test_fresh_answers_are_reused_and_any_spelling_shares_them(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    fake, api_url = api
    fake.projects["foo-bar"] = {"1.0": [file_entry("foo_bar-1.0.tar.gz", "source")]}
    with conveyor(json_api=api_url) as base:
        for path in (
            "/packages/source/f/foo-bar/foo-bar-1.0.tar.gz",
            "/packages/source/F/Foo_Bar/foo-bar-1.0.tar.gz",
            "/packages/source/f/foo.bar/foo-bar-1.0.tar.gz",
        ):
            assert httpx.get(base + path).status_code == 302
    assert fake.count("foo-bar") == 1


def test_expired_answers_are_revalidated_with_their_etag(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    fake, api_url = api
    fake.cache_control = "max-age=0"
    fake.projects["moving"] = {"1.0": [file_entry("moving-1.0.tar.gz", "source")]}
    with conveyor(json_api=api_url) as base:
        first = httpx.get(base + "/packages/source/m/moving/moving-1.0.tar.gz")
        second = httpx.get(base + "/packages/source/m/moving/moving-1.0.tar.gz")
        fake.projects["moving"]["2.0"] = [file_entry("moving-2.0.tar.gz", "source")]
        third = httpx.get(base + "/packages/source/m/moving/moving-2.0.tar.gz")
        assert metric(base, "conveyor_upstream_requests_total", '{outcome="304"}') == 1
    assert [first.status_code, second.status_code, third.status_code] == [302, 302, 302]
    etags = [etag for _, etag in fake.requests]
    assert etags[0] is None
    assert etags[1] is not None  # revalidation: 304, entry renewed
    assert etags[2] == etags[1]  # same ETag sent, but the project changed: 200 with new body


def test_no_store_is_never_kept(api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory) -> None:
    fake, api_url = api
    fake.cache_control = "no-store"
    fake.projects["secret"] = {"1.0": [file_entry("secret-1.0.tar.gz", "source")]}
    with conveyor(json_api=api_url) as base:
        for _ in range(3):
            httpx.get(base + "/packages/source/s/secret/secret-1.0.tar.gz")
    assert fake.count("secret") == 3
    assert all(etag is None for _, etag in fake.requests)


def test_client_errors_are_kept_only_with_a_lifetime(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    fake, api_url = api
    with conveyor(json_api=api_url) as base:
        for _ in range(2):
            httpx.get(base + "/packages/source/n/nothing/nothing-1.0.tar.gz")
        assert fake.count("nothing") == 1  # 404 with max-age=900: kept
        fake.cache_control = None
        for _ in range(2):
            httpx.get(base + "/packages/source/o/other/other-1.0.tar.gz")
        assert fake.count("other") == 2  # 404 without Cache-Control: asked again


def test_cache_is_bounded(api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory) -> None:
    fake, api_url = api
    for name in ("aa", "bb", "cc"):
        fake.projects[name] = {"1.0": [file_entry(f"{name}-1.0.tar.gz", "source")]}
    with conveyor(json_api=api_url, cache_entries=2) as base:
        for name in ("aa", "bb", "cc", "aa"):
            httpx.get(f"{base}/packages/source/{name[0]}/{name}/{name}-1.0.tar.gz")
        assert metric(base, "conveyor_cache_entries") == 2
    assert fake.count("aa") == 2  # evicted by cc, fetched again


def test_cache_off_fetches_every_time(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    fake, api_url = api
    fake.projects["aa"] = {"1.0": [file_entry("aa-1.0.tar.gz", "source")]}
    with conveyor(json_api=api_url, cache_entries=0) as base:
        for _ in range(3):
            assert httpx.get(f"{base}/packages/source/a/aa/aa-1.0.tar.gz").status_code == 302
    assert fake.count("aa") == 3


# --- bounds under floods of unique keys (issue 13, item 7) ------------------------------------


def test_a_flood_of_unknown_projects_is_cached_within_the_entry_bound(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    """404s with a lifetime are cached (each made-up name costs one upstream request), and
    never more of them than ``cache_entries``; the most recent ones answer from memory."""
    fake, api_url = api
    names = [f"no-such-{number}" for number in range(3000)]
    with conveyor(json_api=api_url, cache_entries=300) as base:
        urls = [f"{base}/packages/source/n/{name}/{name}-1.0.tar.gz" for name in names]
        assert asyncio.run(burst_each(urls[:2700])) == [404] * 2700
        assert asyncio.run(burst_each(urls[2700:])) == [404] * 300  # the last 300 stored
        assert metric(base, "conveyor_cache_entries") == 300
        assert asyncio.run(burst_each(urls[2700:])) == [404] * 300
        assert metric(base, "conveyor_cache_lookups_total", '{result="hit"}') == 300
        assert metric(base, "conveyor_cache_bytes") == 300 * ENTRY_WEIGHT
    assert len(fake.requests) == 3000  # one each: cached misses, no second request


def test_concurrent_misses_for_an_unknown_project_make_one_request(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    fake, api_url = api
    fake.stall["ghost"] = 1.0
    with conveyor(json_api=api_url) as base:
        statuses = asyncio.run(burst(base + "/packages/source/g/ghost/ghost-1.0.tar.gz", 500))
    assert statuses == [404] * 500
    assert fake.count("ghost") == 1


def big_project(name: str, files: int) -> dict[str, list[dict[str, Any]]]:
    return {f"1.{n}": [file_entry(f"{name}-1.{n}.tar.gz", "source")] for n in range(files)}


def test_the_cache_is_bounded_in_bytes(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    """Projects with thousands of files weigh megabytes: the byte bound evicts before the
    entry bound does, and a project heavier than the whole budget is served but not kept."""
    fake, api_url = api
    for number in range(8):
        fake.projects[f"big{number}"] = big_project(f"big{number}", 2000)
    fake.projects["huge"] = big_project("huge", 8000)
    budget = 4 * 2**20
    with conveyor(json_api=api_url, cache_max_bytes=budget) as base:
        for number in range(8):
            url = f"{base}/packages/source/b/big{number}/big{number}-1.7.tar.gz"
            assert httpx.get(url).status_code == 302
            assert metric(base, "conveyor_cache_bytes") <= budget
        entries = metric(base, "conveyor_cache_entries")
        assert 2 <= entries <= 3  # ~1.4 MB each
        assert metric(base, "conveyor_cache_bytes") > (entries - 1) * 2**20
        for _ in range(2):
            url = f"{base}/packages/source/h/huge/huge-1.7999.tar.gz"
            # 8,000 files read while they arrive: seconds of CPU at load 20 (httpx's 5 s ran out)
            assert httpx.get(url, timeout=60).status_code == 302
        assert httpx.get(f"{base}/packages/source/b/big7/big7-1.0.tar.gz").status_code == 302
        assert httpx.get(f"{base}/packages/source/b/big0/big0-1.0.tar.gz").status_code == 302
    assert fake.count("huge") == 2  # over the budget: never kept
    assert fake.count("big7") == 1  # the most recent: kept
    assert fake.count("big0") == 2  # the oldest: evicted


def test_an_upstream_answer_over_the_size_limit_is_503(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    fake, api_url = api
    fake.projects["bloated"] = big_project("bloated", 500)
    with conveyor(json_api=api_url, upstream_max_bytes=10_000) as base:
        response = httpx.get(base + "/packages/source/b/bloated/bloated-1.0.tar.gz")
    assert (response.status_code, response.text) == (503, "Package index unavailable\n")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


async def burst_each(urls: list[str]) -> list[int]:
    """GET every URL at once (one connection pool); their statuses in order."""
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(url: str) -> int:
            async with session.get(url, allow_redirects=False) as response:
                return response.status

        return await asyncio.gather(*(one(url) for url in urls))


async def asgi_get(app: ASGIApp, path: str) -> int:
    """One GET straight into the ASGI app (no sockets: fast enough for 50,000 keys)."""
    status = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "http_version": "1.1",
    }
    await app(scope, receive, send)
    return status


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def flood(app: ASGIApp, paths: Iterable[str], status: int, batch: int = 200) -> None:
    iterator = iter(paths)
    while pending := list(itertools.islice(iterator, batch)):
        assert set(await asyncio.gather(*(asgi_get(app, path) for path in pending))) == {status}


FLAT = 4 * 2**20  # RSS growth allowed over a window; an unbounded cache would add >= 10 MB


@pytest.mark.long
def test_floods_of_unique_keys_keep_memory_flat(tmp_path: Path) -> None:
    """Unknown projects, unknown docs paths and unknown filenames of a known project, each
    tens of thousands of unique long keys: once the caches are full, memory stays put."""
    index = f"memory://{tmp_path.name}-index"
    filename, data = build_sdist("demo-pkg", "1.0")
    asyncio.run(upload(open_store(index), filename, data))
    settings = Settings(
        data_dir=tmp_path / "data",
        files=FilesSettings(primary=index),
        conveyor=ConveyorSettings(docs=f"file://{tmp_path}/docs", cache_entries=1000),
    )
    app = build_app(settings)
    pad = "x" * 200

    def projects(numbers: range) -> Iterator[str]:
        for n in numbers:
            name = f"no-such-{n}-{pad}"[:250]
            yield f"/packages/source/n/{name}/{name}-1.0.tar.gz"

    def docs(numbers: range) -> Iterator[str]:
        return (f"/no-such-{n}/{pad}/{pad}/{pad}/{pad}/page-{n}.html" for n in numbers)

    def filenames(numbers: range) -> Iterator[str]:
        return (f"/packages/source/d/demo-pkg/demo_pkg-1.0.{n}.{pad}.tar.gz" for n in numbers)

    def long_filenames(numbers: range) -> Iterator[str]:
        return (f"/packages/source/d/demo-pkg/demo_pkg-1.0.{n}.{pad * 5}.tar.gz" for n in numbers)

    async def scenario() -> list[tuple[str, int]]:
        growth = []
        for name, paths, status, warm, window in (
            ("filenames", filenames, 404, 35_000, 30_000),  # past the 32,768 names cached
            ("long filenames", long_filenames, 404, 0, 20_000),  # no file has such a name
            ("projects", projects, 404, 2_000, 12_000),  # past the 1,000 projects cached
            ("docs", docs, 404, 5_000, 45_000),  # nothing cached for a missing path
        ):
            await flood(app, paths(range(warm)), status)
            before = rss()
            await flood(app, paths(range(warm, warm + window)), status)
            growth.append((name, rss() - before))
        return growth

    for name, grown in asyncio.run(scenario()):
        assert grown < FLAT, f"{name}: RSS grew {grown / 2**20:.1f} MiB"
    exposed = app.metrics.registry.get_sample_value("conveyor_cache_entries")
    assert exposed == 1000


class CountingStore(Store):
    """The real S3 store, counting the metadata lookups made through it."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.url, store.backend)
        self.lookups: list[str] = []

    async def info(self, key: str) -> ObjectInfo:
        self.lookups.append(key)
        return await super().info(key)


def test_concurrent_docs_requests_share_one_store_lookup(s3_url: str) -> None:
    """On a cloud store every docs request starts with a HEAD: a burst for one key, present
    or missing, makes one. The store waits as long as an operator's command does: moto
    answering the 100 GETs that follow the one HEAD took more than the request path's 2 s
    once (a 503, not what this tests)."""
    store = CountingStore(open_store(s3_url, COMMAND_TIMEOUTS))
    asyncio.run(store.put("proj/index.html", b"<h1>proj</h1>"))
    site = DocsSite(store, RedirectTable(store, ConveyorMetrics()))

    async def docs_app(scope: Scope, receive: Receive, send: Send) -> None:
        await site.answer(Request(scope, False, dict(scope["headers"]), []), send)

    async def burst_into(path: str) -> set[int]:
        # 100 at once: each found page is then read by a GET of its own, and moto's server
        # listens with a backlog of 128; past it, connects wait on SYN retransmits beyond
        # the store's 2 s connect timeout on a loaded machine (a 503, not what this tests).
        return set(await asyncio.gather(*(asgi_get(docs_app, path) for _ in range(100))))

    assert asyncio.run(burst_into("/proj/missing")) == {404}
    assert sorted(store.lookups) == ["proj/missing", "proj/missing/index.html"]
    store.lookups.clear()
    assert asyncio.run(burst_into("/proj/")) == {200}
    assert store.lookups == ["proj/index.html"]


@pytest.mark.parametrize(
    ("cache_control", "age", "fresh_for"),
    [
        ("max-age=600", "10", 590.0),
        ("max-age=" + "9" * 5_000, None, float(2**31)),  # past int()'s 4,300-digit limit
        ("max-age=\u00b2", None, 300.0),  # "²": str.isdigit says yes, int() no
        ("max-age=60", "\u00b9" * 3, 60.0),
    ],
)
def test_upstream_lifetimes_that_are_hostile_are_bounded(
    cache_control: str, age: str | None, fresh_for: float
) -> None:
    assert freshness(cache_control, age, default=300.0) == fresh_for
