"""Every memo camo keeps is bounded in entries and bytes, and concurrent lookups coalesce.

A flood of unique URLs and host names fills each memo (verified signatures, checked first
hops, DNS answers, idle upstream connections) past its bound; after that, more of the same
must leave the entry counts at their bounds and the memory camo holds flat.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import tracemalloc
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httptools
import pytest

from support.flood import fetch_all

if TYPE_CHECKING:
    from conftest import Camo, CamoFactory, Upstream

BOUNDS = {"verified_urls": 4096, "checked_urls": 4096, "dns": 1024, "idle_connections": 256}
#: the flood's requests in flight at once
CONCURRENCY = 32


class FloodLookup:
    """Resolves every ``*.flood.test`` name: ``private*`` ones to a refused address, the rest
    to the upstream's 127.0.0.2. With ``count`` it counts its calls (not in the memory test:
    the counts would hold every name)."""

    def __init__(self, delay: float = 0.0, fail: bool = False, count: bool = True) -> None:
        self.calls: dict[str, int] = {}
        self.delay = delay
        self.fail = fail
        self.count = count
        self._lock = threading.Lock()

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        if self.count:
            with self._lock:
                self.calls[host] = self.calls.get(host, 0) + 1
        await asyncio.sleep(self.delay)
        if self.fail or not host.endswith(".flood.test"):
            raise OSError(f"no such name {host}")
        return ["10.0.0.1" if host.startswith("private") else "127.0.0.2"]


class _Statuses:
    """httptools callbacks collecting the status of each response on a connection."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.codes.append(self.parser.get_status_code())


def pipelined(camo: Camo, targets: list[str], batch: int = 200) -> list[int]:
    """The statuses camo answers for ``targets``, sent pipelined on one connection: a flood
    of thousands at a few hundred µs each, where a client library would take ms each."""
    host, _, port = camo.base.removeprefix("http://").rpartition(":")
    statuses = _Statuses()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for first in range(0, len(targets), batch):
            paths = [camo.url(t).removeprefix(camo.base) for t in targets[first : first + batch]]
            sock.sendall(
                b"".join(b"GET %s HTTP/1.1\r\nHost: camo\r\n\r\n" % p.encode() for p in paths)
            )
            while len(statuses.codes) < first + len(paths):
                data = sock.recv(1 << 16)
                assert data, "camo closed the connection"
                statuses.parser.feed_data(data)
    return statuses.codes


def memo_entries(camo: Camo) -> dict[str, float]:
    found = {}
    for line in camo.client.get("/metrics").text.splitlines():
        if line.startswith("camo_memo_entries{"):
            name = line.split('memo="', 1)[1].split('"', 1)[0]
            found[name] = float(line.rsplit(" ", 1)[1])
    return found


async def _fetch_all(camo: Camo, targets: list[str], concurrency: int = CONCURRENCY) -> list[int]:
    """Every target through camo, ``concurrency`` at a time; the statuses in order."""
    headers = {"if-none-match": '"v1"'}  # the upstream's /etag answers 304
    requests = [(camo.url(target), headers) for target in targets]
    answers = await fetch_all(camo.base, requests, concurrency=concurrency, timeout=30)
    return [answer.status for answer in answers]


def refused_flood(camo: Camo, start: int, count: int, pad: int = 0) -> None:
    """``count`` requests, each for a new URL on a new host name that resolves to a private
    address: signature, URL checks and lookup are all memoised, and no upstream is asked."""
    padding = "?p=" + "x" * pad if pad else ""
    targets = [f"http://private{n}.flood.test/x.png{padding}" for n in range(start, start + count)]
    assert pipelined(camo, targets) == [404] * count


@pytest.mark.long
def test_unique_key_flood_keeps_memos_at_their_bounds(make_camo: CamoFactory) -> None:
    with make_camo(lookup=FloodLookup(count=False)) as camo:
        refused_flood(camo, 0, 4500)  # past every bound
        entries = memo_entries(camo)
        assert entries["verified_urls"] == BOUNDS["verified_urls"]
        assert entries["checked_urls"] == BOUNDS["checked_urls"]
        assert entries["dns"] == BOUNDS["dns"]
        refused_flood(camo, 4500, 3000)
        assert memo_entries(camo) == entries  # replaced, not added to
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            refused_flood(camo, 7500, 2000, pad=1000)  # URLs too long to be memoised
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert memo_entries(camo) == entries
    # memoised, 2,000 long URLs would hold ~8 MB; what grows is only the host-name memos
    # taking in new names and yarl's own 128 parsed URLs
    assert grown < 2 * 1024 * 1024, grown


def test_idle_connections_to_many_hosts_stay_bounded(
    make_camo: CamoFactory, upstream: Upstream
) -> None:
    with make_camo(lookup=FloodLookup()) as camo:
        targets = [f"http://h{n}.flood.test:{upstream.port}/etag" for n in range(400)]
        assert asyncio.run(_fetch_all(camo, targets)) == [304] * 400
        assert memo_entries(camo)["idle_connections"] == BOUNDS["idle_connections"]


def test_concurrent_requests_for_a_new_name_make_one_lookup(
    make_camo: CamoFactory, upstream: Upstream
) -> None:
    lookup = FloodLookup(delay=0.3)
    with make_camo(lookup=lookup) as camo:
        targets = [f"http://burst.flood.test:{upstream.port}/etag?n={n}" for n in range(300)]
        assert asyncio.run(_fetch_all(camo, targets, concurrency=300)) == [304] * 300
    assert lookup.calls == {"burst.flood.test": 1}


def test_concurrent_requests_for_a_failing_name_share_the_failure(
    make_camo: CamoFactory, upstream: Upstream
) -> None:
    lookup = FloodLookup(delay=0.3, fail=True)
    with make_camo(lookup=lookup) as camo:
        targets = [f"http://gone.flood.test:{upstream.port}/etag?n={n}" for n in range(100)]
        assert asyncio.run(_fetch_all(camo, targets, concurrency=100)) == [404] * 100
        # a failure is not remembered: the next request asks again
        assert camo.get(targets[0]).headers["x-camo-error"] == "cannot resolve gone.flood.test"
    assert lookup.calls == {"gone.flood.test": 2}


def test_a_waiter_giving_up_does_not_cancel_the_lookup(
    make_camo: CamoFactory, upstream: Upstream
) -> None:
    lookup = FloodLookup(delay=0.5)
    with make_camo(lookup=lookup, timeout="200ms") as camo:
        target = f"http://late.flood.test:{upstream.port}/etag"
        assert camo.get(target).status_code == 504  # gave up while the lookup went on
        deadline = 50
        while memo_entries(camo)["dns"] == 0 and deadline:
            asyncio.run(asyncio.sleep(0.05))
            deadline -= 1
        assert memo_entries(camo)["dns"] == 1
        assert camo.get(target, headers={"if-none-match": '"v1"'}).status_code == 304
    assert lookup.calls == {"late.flood.test": 1}
