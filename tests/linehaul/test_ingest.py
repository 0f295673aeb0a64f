"""Ingest: log objects in real stores (local dirs, moto S3) -> result objects, exactly once."""

from __future__ import annotations

import asyncio
import gc
import gzip
import threading
import time
import tracemalloc
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from pythonhosted.linehaul import UnprocessableLine, batch, ingest, leases, parse
from pythonhosted.linehaul.batch import Counts, ObjectConverter, Part
from pythonhosted.linehaul.ingest import IngestSummary, ingest_once, result_keys
from pythonhosted.linehaul.publish import publish_with
from pythonhosted.storage import NotFound, StorageError, Store, open_store
from pythonhosted.storage.directory import DirectoryStore
from pythonhosted.storage.stores import Listed
from support.linehaul_data import PIP, REAL, download_line, gz, log_key, seed_unique, simple_line


def _ingest(logs: Store, results: Store, timeout: float = 60.0) -> IngestSummary:
    return asyncio.run(ingest_once(logs, results, lease_timeout=timeout))


async def _contents(store: Store) -> dict[str, bytes]:
    return {item.key: await store.get_bytes(item.key) for item in await store.list()}


def _expected_rows(lines: list[str]) -> tuple[list[object], list[object]]:
    downloads, simple = [], []
    for line in lines:
        try:
            row = parse(line)
        except UnprocessableLine:
            continue
        if row is not None:
            (downloads if "file" in row else simple).append(orjson.loads(orjson.dumps(row)))
    return downloads, simple


@pytest.fixture(params=["file", "s3", "seaweedfs"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, Store]:
    if request.param == "file":
        return open_store(f"file://{tmp_path}/logs"), open_store(f"file://{tmp_path}/results")
    url = request.getfixturevalue(f"{request.param}_url")
    base, query = url.split("?", 1)
    return open_store(f"{base}/logs?{query}"), open_store(f"{base}/results?{query}")


def test_real_batches(stores: tuple[Store, Store]) -> None:
    logs, results = stores
    for path in REAL:
        asyncio.run(logs.put(f"downloads/2021/01/07/{path.name}", path.read_bytes()))
    summary = _ingest(logs, results)
    assert (summary.objects, summary.counts.rows, summary.counts.ignored) == (2, 6, 2)
    assert asyncio.run(logs.list()) == []  # logs and leases gone
    found = asyncio.run(_contents(results))
    lines = [
        line
        for path in REAL
        for line in gzip.decompress(path.read_bytes()).decode().split("\n")
        if line
    ]
    downloads, simple = _expected_rows(lines)
    name = REAL[0].name.removesuffix(".log.gz")
    assert sorted(found) == sorted(
        [
            f"processed/20210107/downloads-{name}.json",
            f"processed/20210107/simple-{REAL[1].name.removesuffix('.log.gz')}.json",
        ]
    )
    rows = [orjson.loads(line) for data in found.values() for line in data.splitlines()]
    assert [r for r in rows if "file" in r] == downloads
    assert [r for r in rows if "file" not in r] == simple
    # each file of rows says how many it holds (publish's bookkeeping reads it)
    hints = {key: asyncio.run(results.info(key)).metadata.get(ingest.ROWS) for key in found}
    assert hints == {key: str(data.count(b"\n")) for key, data in found.items()}


def test_row_counts_of_a_mixed_object(tmp_path: Path) -> None:
    logs, results = open_store(f"file://{tmp_path}/logs"), open_store(f"file://{tmp_path}/results")
    lines = [download_line(n) for n in range(3)] + [simple_line(n) for n in range(2)]
    lines += ["garbage", download_line(9, agent="Java/1.8.0")]  # unprocessable, ignored
    asyncio.run(logs.put(log_key(0), gz(lines)))
    _ingest(logs, results)
    found = {
        item.key: asyncio.run(results.info(item.key)).metadata
        for item in asyncio.run(results.list())
    }
    name = log_key(0).rsplit("/", 1)[1].removesuffix(".log.gz")
    assert found == {
        f"processed/20210107/downloads-{name}.json": {ingest.ROWS: "3"},
        f"processed/20210107/simple-{name}.json": {ingest.ROWS: "2"},
        f"unprocessed/20210107/{name}.txt": {},
    }


def _only_part(data: bytes) -> Part:
    converter = ObjectConverter()
    assert list(converter.feed(data)) == []
    return converter.finish()


def test_result_names_strip_the_suffix_not_letters() -> None:
    part = _only_part(gz([download_line(1)]))
    keys = result_keys("downloads/x/zlog.log.gz.log.gz", part, "2020-01-01")
    assert list(keys) == ["processed/20210107/downloads-zlog.log.gz.json"]
    # no rows: the fallback date names the day
    part = _only_part(gz(["garbage"]))
    assert list(result_keys("a/gol.log.gz", part, "2020-01-02")) == ["unprocessed/20200102/gol.txt"]


def test_earliest_event_names_the_day() -> None:
    late = download_line(1, when=1_610_100_000)  # 2021-01-08
    early = simple_line(2, when=1_609_000_000)  # 2020-12-26
    keys = result_keys("a.log.gz", _only_part(gz([late, early])), "2000-01-01")
    assert sorted(keys) == [
        "processed/20201226/downloads-a.json",
        "processed/20201226/simple-a.json",
    ]


def test_later_parts_go_under_their_number() -> None:
    part = Part(3, b"d\n", b"s\n", b"u\n", 1, 1, "2021-01-08 00:00:01 +00:00")
    assert result_keys("x/a.log.gz", part, "2000-01-01") == {
        "processed/20210108/part3/downloads-a.json": (b"d\n", 1),
        "processed/20210108/part3/simple-a.json": (b"s\n", 1),
        "unprocessed/20210108/part3/a.txt": (b"u\n", None),
    }


def test_ignored_agents_never_unprocessed(tmp_path: Path) -> None:
    logs, results = open_store(f"file://{tmp_path}/l"), open_store(f"file://{tmp_path}/r")
    lines = [download_line(1, agent="Go-http-client/1.1"), download_line(2, agent="(null)")]
    asyncio.run(logs.put(log_key(0), gz(lines)))
    summary = _ingest(logs, results)
    assert summary.counts.ignored == 2
    assert asyncio.run(results.list()) == []


def test_bad_input(tmp_path: Path) -> None:
    logs, results = open_store(f"file://{tmp_path}/l"), open_store(f"file://{tmp_path}/r")
    good = gz([download_line(1)])
    huge = download_line(2, agent="x" * (1 << 20))
    mixed = (
        download_line(3).replace("demo-1.0", "demo\udcff-1.0").encode("utf-8", "surrogateescape")
        + b"\n"  # a non-UTF-8 byte in the url: still a row
        + b"download|only|four|fields\n"
        + b"\xff\xfe|garbage\n"
        + huge.encode()
        + b"\n"
    )
    objects = {
        log_key(0): good[: len(good) // 2],  # truncated gzip
        log_key(1): b"",  # empty
        log_key(2): b"not gzip at all",
        log_key(3): gzip.compress(mixed),
        log_key(4): good,
    }
    for key, data in objects.items():
        asyncio.run(logs.put(key, data))
    summary = _ingest(logs, results)
    assert (summary.objects, summary.corrupt) == (3, 2)
    assert summary.counts == Counts(rows=2, unprocessable=2, too_long=1)
    # the truncated object's only line was cut; the object that is not gzip was never read
    assert (summary.lost, summary.unreadable) == (1, len(objects[log_key(2)]))
    remaining = {item.key for item in asyncio.run(logs.list())}
    assert remaining == {f"corrupt/{log_key(0)}", f"corrupt/{log_key(2)}"}
    assert asyncio.run(logs.get_bytes(f"corrupt/{log_key(0)}")) == objects[log_key(0)]
    found = asyncio.run(_contents(results))
    name3 = log_key(3).rsplit("/", 1)[1].removesuffix(".log.gz")
    assert found[f"unprocessed/20210107/{name3}.txt"] == (
        b"download|only|four|fields\n\xff\xfe|garbage\n"
    )
    rows = [
        orjson.loads(line)
        for line in found[f"processed/20210107/downloads-{name3}.json"].splitlines()
    ]
    assert len(rows) == 1
    assert rows[0]["file"]["filename"] == "demo\ufffd-1.0-py3-none-any.whl"
    # the 1 MB line is over the 64 KiB limit: cut, its start kept aside
    assert found[f"unprocessed/20210107/too-long/{name3}.txt"] == huge.encode()[:4096] + b"\n"


def test_a_retry_overwrites_instead_of_duplicating(tmp_path: Path) -> None:
    """A worker killed between writing results and deleting the log: the retry writes the
    same names with the same contents."""
    logs, results = open_store(f"file://{tmp_path}/l"), open_store(f"file://{tmp_path}/r")
    data = gz([download_line(n) for n in range(50)] + [simple_line(1), "junk"])
    asyncio.run(logs.put(log_key(0), data))
    _ingest(logs, results)
    first = asyncio.run(_contents(results))
    asyncio.run(logs.put(log_key(0), data))  # as if the delete never happened
    _ingest(logs, results)
    assert asyncio.run(_contents(results)) == first


def test_a_held_lease_is_skipped_and_an_expired_one_taken_over(tmp_path: Path) -> None:
    logs, results = open_store(f"file://{tmp_path}/l"), open_store(f"file://{tmp_path}/r")
    asyncio.run(logs.put(log_key(0), gz([download_line(1)])))
    held = asyncio.run(leases.claim(logs, log_key(0), "someone-else", 60.0))
    assert held == leases.Lease(log_key(0), 1)
    assert asyncio.run(leases.claim(logs, log_key(0), "me", 60.0)) is None
    summary = _ingest(logs, results)
    assert (summary.busy, summary.objects) == (1, 0)
    asyncio.run(leases.release(logs, log_key(0)))
    asyncio.run(leases.claim(logs, log_key(0), "dead-worker", 0.01))
    time.sleep(0.05)
    summary = _ingest(logs, results)
    assert (summary.busy, summary.objects) == (0, 1)
    assert asyncio.run(logs.list()) == []


def test_one_generation_per_takeover(tmp_path: Path) -> None:
    """Of several workers racing for an expired lease, exactly one wins."""
    logs = open_store(f"file://{tmp_path}/l")

    async def race() -> list[leases.Lease | None]:
        await leases.claim(logs, "k.log.gz", "dead", 0.001)
        await asyncio.sleep(0.01)
        return await asyncio.gather(
            *(leases.claim(logs, "k.log.gz", f"w{n}", 60.0) for n in range(8))
        )

    won = [lease for lease in asyncio.run(race()) if lease is not None]
    assert won == [leases.Lease("k.log.gz", 2)]


def test_sweep_drops_orphaned_expired_leases(tmp_path: Path) -> None:
    logs = open_store(f"file://{tmp_path}/l")
    asyncio.run(leases.claim(logs, "gone.log.gz", "dead", 0.001))
    asyncio.run(leases.claim(logs, "live.log.gz", "alive", 0.001))
    time.sleep(0.01)
    assert asyncio.run(leases.sweep(logs, {"live.log.gz"})) == 1
    assert [item.key for item in asyncio.run(logs.list())] == ["leases/live.log.gz/0000000001"]


def test_convert_keeps_order_and_routes_by_kind() -> None:
    lines = [download_line(1), simple_line(2), "bad", download_line(3), "", PIP]
    converted = batch.convert(gz(lines))
    assert [orjson.loads(r)["url"] for r in converted.downloads.splitlines()] == [
        "/packages/00000001/demo-1.0-py3-none-any.whl",
        "/packages/00000003/demo-1.0-py3-none-any.whl",
    ]
    assert len(converted.simple.splitlines()) == 1
    assert converted.unprocessed == b"bad\n" + PIP.encode() + b"\n"
    assert converted.counts == Counts(rows=3, unprocessable=2, blank=1)


class Gate:
    """Stands in for ``ObjectConverter``: the conversions of the first ``hold`` objects wait
    at their end, in ingest's worker thread, until the test lets them go, so a conversion
    takes as long as a test needs."""

    def __init__(self, hold: int) -> None:
        self.entered = [threading.Event() for _ in range(hold)]
        self.go = [threading.Event() for _ in range(hold)]
        self._calls = 0
        self._lock = threading.Lock()

    def __call__(self, max_line: int) -> ObjectConverter:
        with self._lock:
            call, self._calls = self._calls, self._calls + 1
        return _Held(max_line, self, call)

    async def wait_entered(self, call: int) -> None:
        assert await asyncio.to_thread(self.entered[call].wait, 30), "conversion never started"


class _Held(ObjectConverter):
    def __init__(self, max_line: int, gate: Gate, call: int) -> None:
        super().__init__(max_line)
        self.gate = gate
        self.call = call

    def finish(self) -> Part:
        if self.call < len(self.gate.go):
            self.gate.entered[self.call].set()
            assert self.gate.go[self.call].wait(60), "the test never let the conversion go"
        return super().finish()


class Watched:
    """A store (the same one, seen through this) that records this worker's writes and can
    stall its lease renewals until ``resume`` is set, as a paused process or a hanging store
    would."""

    def __init__(self, base: Store, *, stall_renewals: bool = False) -> None:
        self.base = base
        self.changed: list[str] = []
        self.resume = asyncio.Event()
        if not stall_renewals:
            self.resume.set()

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        create_only: bool = False,
    ) -> None:
        if key.startswith(leases.PREFIX) and not key.endswith("/0000000001"):
            await self.resume.wait()
        self.changed.append(key)
        await self.base.put(
            key, data, content_type=content_type, metadata=metadata, create_only=create_only
        )

    async def delete(self, key: str) -> None:
        self.changed.append(key)
        await self.base.delete(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + 30
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


async def _generation(logs: Store, key: str) -> int:
    found = await logs.list(f"{leases.PREFIX}{key}/")
    return int(found[-1].key.rsplit("/", 1)[1]) if found else 0


def test_a_long_object_keeps_its_lease(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversion three renewals long (a whole lease timeout): the lease it started with
    has expired, yet a second worker finds the object busy."""
    logs, results = stores
    gate = Gate(hold=1)
    monkeypatch.setattr(ingest, "ObjectConverter", gate)
    timeout = 2.0
    key = log_key(0)

    async def scenario() -> None:
        await logs.put(key, gz([download_line(n) for n in range(20)]))
        started = time.time()
        slow = asyncio.create_task(ingest_once(logs, results, lease_timeout=timeout))
        await gate.wait_entered(0)

        async def renewed_three_times() -> bool:
            return await _generation(logs, key) >= 4

        await _until(renewed_three_times, "the lease was renewed three times")
        assert time.time() > started + timeout - 0.1  # the first lease has expired
        other = await ingest_once(logs, results, lease_timeout=60.0)
        assert (other.busy, other.objects) == (1, 0)
        gate.go[0].set()
        done = await slow
        assert (done.busy, done.objects, done.counts.rows) == (0, 1, 20)
        assert await logs.list() == []
        assert len(await results.list()) == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("taker_finishes_first", [False, True])
def test_a_worker_that_lost_its_lease_writes_and_deletes_nothing(
    stores: tuple[Store, Store],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    taker_finishes_first: bool,
) -> None:
    """A worker stalls past its lease (renewals hang); another takes the object over. When
    the first one comes back it stops: no results, no delete, the taker's lease untouched,
    whether the taker is still converting or already done and released; its warning says
    who has the object now, or that it is done."""
    base_logs, results = stores
    stalled_logs = Watched(base_logs, stall_renewals=True)
    stalled_results = Watched(results)
    gate = Gate(hold=1 if taker_finishes_first else 2)
    monkeypatch.setattr(ingest, "ObjectConverter", gate)
    key = log_key(0)
    data = gz([download_line(n) for n in range(20)])

    async def scenario() -> None:
        await base_logs.put(key, data)
        stalled = asyncio.create_task(
            ingest_once(stalled_logs, stalled_results, lease_timeout=0.5, owner="stalled")
        )
        await gate.wait_entered(0)

        async def lease_expired() -> bool:
            record = orjson.loads(await base_logs.get_bytes(f"{leases.PREFIX}{key}/0000000001"))
            return bool(record["expires"] < time.time())

        await _until(lease_expired, "the stalled worker's lease expired")
        taker = asyncio.create_task(
            ingest_once(base_logs, results, lease_timeout=60.0, owner="taker")
        )
        if taker_finishes_first:
            assert (await taker).objects == 1
        else:
            await gate.wait_entered(1)
        stalled_logs.resume.set()
        gate.go[0].set()
        lost = await stalled
        assert (lost.busy, lost.objects, lost.corrupt) == (1, 0, 0)
        assert stalled_results.changed == []
        assert all(name.startswith(leases.PREFIX) for name in stalled_logs.changed)
        if taker_finishes_first:
            assert await base_logs.list() == []  # not even a stray lease
        else:
            assert await base_logs.get_bytes(key) == data
            assert await _generation(base_logs, key) == 2  # the taker's, still there
            assert await results.list() == []
            gate.go[1].set()
            assert (await taker).objects == 1
            assert await base_logs.list() == []
        found = await _contents(results)
        assert len(found) == 1
        assert len(next(iter(found.values())).splitlines()) == 20

    asyncio.run(scenario())
    [warning] = [r.getMessage() for r in caplog.records if "lease" in r.getMessage()]
    now = (
        "released by a worker that took the object over and finished it: it is done"
        if taker_finishes_first
        else "generation 2 is taker's (expires in 60 s): the object is left to that worker, "
        "or to whoever takes it over if that one dies"
    )
    assert warning.replace("in 59 s", "in 60 s") == (
        f"lost the lease on {key} (generation 1): {now}; this worker writes and deletes "
        "nothing more for it (counted busy)"
    )


class _ListingRacesRenewal:
    """A log store (the same one, seen through this) whose first listing of a lease reads
    the names, lets the holder renew (``between``), then leaves out the names gone by then:
    what a local directory's listing does when a renewal runs between its reading of the
    names and its reading of each file's size and time."""

    def __init__(self, base: Store, between: Callable[[], Awaitable[None]]) -> None:
        self.base = base
        self.between = between
        self.raced = False

    async def list(self, prefix: str = "", *, after: str | None = None) -> list[Listed]:
        found = await self.base.list(prefix, after=after)
        if self.raced or not prefix.startswith(leases.PREFIX):
            return found
        self.raced = True
        await self.between()
        return [item for item in found if await self._exists(item.key)]

    async def _exists(self, key: str) -> bool:
        try:
            await self.base.info(key)
        except NotFound:
            return False
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


class _FirstPutWaits:
    """A results store (the same one) whose first put waits until ``resume`` is set."""

    def __init__(self, base: Store) -> None:
        self.base = base
        self.writing = asyncio.Event()
        self.resume = asyncio.Event()

    async def put(self, key: str, data: bytes, **options: Any) -> None:
        if not self.writing.is_set():
            self.writing.set()
            await self.resume.wait()
        await self.base.put(key, data, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def test_a_listing_that_races_a_renewal_takes_nothing_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker's claim lists a held lease just as the holder renews it (before it writes
    its results): the holder keeps the object, the other counts it busy, nobody loses a
    lease. A renewal that dropped its previous generation made such a listing come back
    empty, the other worker claimed generation 1 and did the object too, and the holder's
    next renewal found its lease released: "lost the lease" with leases of a minute."""
    logs = open_store(f"file://{tmp_path}/logs")
    results = open_store(f"file://{tmp_path}/results")
    paused_results = _FirstPutWaits(results)
    gate = Gate(hold=1)
    monkeypatch.setattr(ingest, "ObjectConverter", gate)
    key = log_key(0)
    asyncio.run(logs.put(key, gz([download_line(n) for n in range(20)])))

    async def scenario() -> tuple[IngestSummary, IngestSummary]:
        async def holder_renews() -> None:
            gate.go[0].set()  # the holder converts, renews, and waits to write its results
            await asyncio.wait_for(paused_results.writing.wait(), 30)

        holder = asyncio.create_task(
            ingest_once(logs, paused_results, lease_timeout=60.0, owner="holder")
        )
        await gate.wait_entered(0)
        racing = _ListingRacesRenewal(logs, holder_renews)
        other = await ingest_once(racing, results, lease_timeout=60.0, owner="other")
        assert racing.raced
        paused_results.resume.set()
        return await holder, other

    held, other = asyncio.run(scenario())
    assert (held.objects, held.busy, other.objects, other.busy) == (1, 0, 0, 1)
    assert not [r.getMessage() for r in caplog.records if "lease" in r.getMessage()]
    assert asyncio.run(logs.list()) == []
    found = asyncio.run(_contents(results))
    assert [len(data.splitlines()) for data in found.values()] == [20]


def test_a_stop_ends_the_pass_after_the_object_under_way(tmp_path: Path) -> None:
    logs, results = open_store(f"file://{tmp_path}/logs"), open_store(f"file://{tmp_path}/results")
    for index in range(3):
        asyncio.run(logs.put(log_key(index), gz([download_line(index)])))

    async def scenario() -> IngestSummary:
        stop = asyncio.Event()
        return await ingest_once(
            logs, results, lease_timeout=60.0, on_object=stop.set, stop=stop, concurrency=1
        )

    summary = asyncio.run(scenario())
    assert (summary.objects, summary.counts.rows) == (1, 1)
    assert len(ingest.pending([item.key for item in asyncio.run(logs.list())])) == 2
    assert len(asyncio.run(results.list("processed/"))) == 1


class _Watched(DirectoryStore):
    """A log store that counts the objects under way: from the claim (a lease's first
    generation) to the log object's delete."""

    def __init__(self, root: Path) -> None:
        root.mkdir()
        super().__init__(f"file://{root}", root)
        self.under_way = 0
        self.most = 0

    async def put(self, key: str, data: bytes, **options: Any) -> None:
        await super().put(key, data, **options)
        if key.startswith(leases.PREFIX) and key.endswith("/0000000001"):
            self.under_way += 1
            self.most = max(self.most, self.under_way)

    async def delete(self, key: str) -> None:
        await super().delete(key)
        if not key.startswith(leases.PREFIX):
            self.under_way -= 1


def test_a_pass_has_several_small_objects_under_way(tmp_path: Path) -> None:
    """Each object waits on ~17 store round trips: a pass overlaps them, up to
    ``concurrency`` objects at once (linehaul.ingest_concurrency); and a stop ends it after
    the objects under way, the rest left for the next pass."""
    logs, results = _Watched(tmp_path / "logs"), open_store(f"file://{tmp_path}/results")
    for index in range(24):
        asyncio.run(logs.put(log_key(index), gz([download_line(index)])))
    summary = asyncio.run(ingest_once(logs, results, lease_timeout=60.0, concurrency=4))
    assert (summary.objects, summary.counts.rows, summary.busy) == (24, 24, 0)
    assert (logs.most, logs.under_way) == (4, 0)
    assert asyncio.run(logs.list()) == []  # every lease released

    for index in range(24, 36):
        asyncio.run(logs.put(log_key(index), gz([download_line(index)])))

    async def stopped() -> IngestSummary:
        stop = asyncio.Event()
        return await ingest_once(
            logs, results, lease_timeout=60.0, on_object=stop.set, stop=stop, concurrency=4
        )

    summary = asyncio.run(stopped())
    assert (summary.objects, summary.counts.rows) == (4, 4)
    assert len(ingest.pending([item.key for item in asyncio.run(logs.list())])) == 8


class _HeldHalfway(DirectoryStore):
    """A log store that gives the first ``count`` log objects read half of their bytes, then
    holds them until all ``count`` have had their halves: that many objects under way at
    once, each converted as far as its first half."""

    def __init__(self, root: Path, count: int) -> None:
        root.mkdir()
        super().__init__(f"file://{root}", root)
        self.count = count
        self.halfway = 0
        self.all_halfway = asyncio.Event()

    async def read(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        data = b"".join([chunk async for chunk in await super().read(key, start, end)])
        return self._halves(data)

    async def _halves(self, data: bytes) -> AsyncGenerator[bytes, None]:
        yield data[: len(data) // 2]
        if not self.all_halfway.is_set():
            self.halfway += 1
            if self.halfway == self.count:
                self.all_halfway.set()
            await self.all_halfway.wait()
        yield data[len(data) // 2 :]


def test_an_object_under_way_holds_what_it_was_given(tmp_path: Path) -> None:
    """A worker has many small objects under way at once (linehaul.ingest_concurrency), so
    each must hold about what it was given, not a fixed size: a converter once took 3 MB of C
    tables (and a 2 MB buffer per table) from its start, and a reference cycle kept each one
    after its object until the garbage collector ran (a pass over 1,000 objects of 10 lines
    held 25 MB more per object under way). Here 16 objects are under way at once, halfway
    through, and 64 pass, the collector off: the pass's peak of traced allocations stays
    within 192 KiB per object under way (ISA-L's inflate state is 85 KiB of that) and 1 MiB."""
    under_way, objects = 16, 64
    logs, results = _HeldHalfway(tmp_path / "logs", under_way), open_store(f"file://{tmp_path}/r")
    lines = [[download_line(index * 10 + n) for n in range(9)] for index in range(objects)]
    for index, object_lines in enumerate(lines):
        asyncio.run(logs.put(log_key(index), gz([*object_lines, simple_line(index)])))
    batch.convert(gz([download_line(objects * 10), simple_line(objects)]))  # the memos warm
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    gc.disable()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        summary = asyncio.run(ingest_once(logs, results, lease_timeout=60.0, concurrency=under_way))
        peak = tracemalloc.get_traced_memory()[1] - before
        left = [item for item in gc.get_objects() if isinstance(item, ObjectConverter)]
    finally:
        gc.enable()
        if started:
            tracemalloc.stop()
    assert (summary.objects, summary.counts.rows) == (objects, objects * 10)
    assert logs.halfway == under_way
    assert left == []  # freed with their objects, not left for the collector
    assert peak < under_way * (192 << 10) + (1 << 20), f"{peak / under_way / 1024:.0f} KiB each"


def test_a_failed_pass_lets_its_leases_go(tmp_path: Path) -> None:
    """A results store that refuses writes (a full disk; here a file where a folder goes)
    ends the pass. Before, the objects under way kept their leases and the next pass, once
    the store took writes again, counted them busy for the whole lease timeout (5 minutes by
    default): 8 of 20. Now every lease is let go and the next pass takes all 200 objects."""
    logs, results = open_store(f"file://{tmp_path}/l"), open_store(f"file://{tmp_path}/r")
    seed_unique(logs, 200, 5)
    (tmp_path / "r").mkdir(exist_ok=True)
    (tmp_path / "r" / "processed").write_bytes(b"")  # not a folder: every write fails
    with pytest.raises(StorageError):
        _ingest(logs, results)
    assert [item.key for item in asyncio.run(logs.list()) if item.key.startswith("leases/")] == []
    (tmp_path / "r" / "processed").unlink()
    summary = _ingest(logs, results)
    assert (summary.objects, summary.busy) == (200, 0)


def test_ingest_and_publish_do_not_wait_for_the_default_pool(tmp_path: Path, s3_url: str) -> None:
    """Linehaul's conversions and loads ran in asyncio's default pool: in ``serve`` they held
    the threads other services' blocking steps wait for (a cold ``.metadata`` sidecar's
    compression), and waited behind them. With every thread of that pool held, a pass of
    ingest and one of publish now finish on their own pool (stores on S3, whose client
    needs no thread: a local directory's listing is short work of the default pool's)."""
    base, query = s3_url.split("?", 1)
    logs = open_store(f"{base}/logs?{query}")
    results = open_store(f"{base}/results?{query}")
    seed_unique(logs, 3, 200)
    release = threading.Event()

    async def passes_while_the_default_pool_is_full() -> tuple[int, int]:
        held = [asyncio.create_task(asyncio.to_thread(release.wait)) for _ in range(32)]
        try:
            ingested = await asyncio.wait_for(ingest_once(logs, results, lease_timeout=60), 60)
            published = await asyncio.wait_for(
                publish_with(results, f"duckdb://{tmp_path}/w.duckdb", batch_files=10), 60
            )
            return ingested.counts.rows, published.rows
        finally:
            release.set()
            await asyncio.gather(*held)

    assert asyncio.run(passes_while_the_default_pool_is_full()) == (600, 600)
