"""Where S3 servers differ, and what the Store makes of it: moto (an in-memory mock) and
SeaweedFS (a real distributed store). The Store API's own tests run on both through
``writable_store``; these are the cases where the two answered differently, or could."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pythonhosted.storage import NotFound, Store, StoreUnavailable, Timeouts, open_store
from pythonhosted.storage.errors import AlreadyExists


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(params=["s3", "seaweedfs"])
def s3_server_url(request: pytest.FixtureRequest) -> str:
    """An empty store on each S3 server: a moto bucket, a SeaweedFS prefix."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def test_an_untyped_put_reads_back_the_same_type(s3_server_url: str) -> None:
    """SeaweedFS sniffs a type for an object put without one (text/plain here) where moto and
    AWS say binary/octet-stream: the Store sends AWS's default, which SeaweedFS keeps."""
    store = open_store(s3_server_url)
    run(store.put("processed/rows.json", b'{"project": "demo"}\n'))
    run(store.put("demo-1.0-py3-none-any.whl", b"PK", content_type="application/octet-stream"))
    run(store.put("demo-1.0.tar.gz", b"\x1f\x8b", content_type="application/x-tar"))
    assert run(store.info("processed/rows.json")).content_type == "binary/octet-stream"
    whl = run(store.info("demo-1.0-py3-none-any.whl"))
    assert whl.content_type == "application/octet-stream"
    assert run(store.info("demo-1.0.tar.gz")).content_type == "application/x-tar"


KEYS = [
    "packages/ab/cd/demo-1.0+local.tar.gz",  # '+' is a space to some S3 path decoders
    "packages/x y/demo.whl",
    "packages/ü/démo-1.0.tar.gz",
    "packages/a%2Fb/demo.zip",
    "packages/q?x#y/demo.zip",
]


def test_unusual_keys_round_trip(s3_server_url: str) -> None:
    store = open_store(s3_server_url)

    async def scenario() -> None:
        for key in KEYS:
            await store.put(key, key.encode(), metadata={"project": "demo"})
        for key in KEYS:
            assert await store.get_bytes(key) == key.encode()
            assert dict((await store.info(key)).metadata) == {"project": "demo"}
        assert [item.key for item in await store.list("packages/")] == sorted(KEYS)

    run(scenario())


def test_a_create_only_race_has_one_winner(seaweedfs_url: str) -> None:
    """What ingest's leases rely on: of writers racing to create one key, exactly one wins and
    its bytes stay; the others get AlreadyExists (late, from SeaweedFS: see Store.put).

    SeaweedFS only, as S3 itself: moto (5.2.5) checks ``If-None-Match: *`` and then writes,
    in whichever of its server's threads took the request, so on a loaded machine two of
    four writers both won there (a suite run at load 8-10). A limit of the mock, which
    promises no atomicity; the Store sends the same conditional request to both."""
    stores = [open_store(seaweedfs_url, Timeouts(connect=5, read=30)) for _ in range(4)]

    async def race(key: str) -> None:
        async def attempt(n: int) -> int | None:
            try:
                await stores[n].put(key, b"writer %d" % n, create_only=True)
            except AlreadyExists:
                return None
            return n

        winners = [n for n in await asyncio.gather(*map(attempt, range(4))) if n is not None]
        assert len(winners) == 1
        assert await stores[0].get_bytes(key) == b"writer %d" % winners[0]

    run(race("leases/a/0000000001"))


def test_wrong_credentials_refuse_writes_and_miss_reads(
    seaweedfs_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS checks signatures (moto does not): a 403 on a read is a missing key, as S3
    says for keys a client may not list; on a write or delete it is a refusal, not a
    missing key (ingest takes NotFound on delete for "another worker finished it")."""
    run(open_store(seaweedfs_url).put("k", b"v"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    store = open_store(seaweedfs_url)
    with pytest.raises(NotFound):
        run(store.info("k"))
    for write in (
        store.put("k2", b"x"),
        store.put("k3", b"x", create_only=True),
        store.delete("k"),
    ):
        with pytest.raises(StoreUnavailable, match=r": permission denied: .*403 Forbidden"):
            run(write)
    with pytest.raises(StoreUnavailable, match="403 Forbidden"):
        run(store.list())


def test_listing_past_one_page(seaweedfs_url: str) -> None:
    """More keys than one ListObjectsV2 page (1000): every key, once, in order."""
    store = open_store(seaweedfs_url)

    async def scenario(store: Store) -> list[str]:
        gate = asyncio.Semaphore(32)

        async def put(n: int) -> None:
            async with gate:
                await store.put(f"downloads/2021/01/07/{n:05d}.log.gz", b"x")

        await asyncio.gather(*map(put, range(1010)))
        return [item.key for item in await store.list("downloads/")]

    keys = run(scenario(store))
    assert keys == [f"downloads/2021/01/07/{n:05d}.log.gz" for n in range(1010)]
