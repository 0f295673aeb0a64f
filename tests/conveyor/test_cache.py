"""The JSON lookup cache (spec rule 7): coalescing, freshness, ETag revalidation, bounds."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import httpx

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
