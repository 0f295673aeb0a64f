"""Clients that leave mid-download, in their hundreds and at random points: every request
they made ends (counted once, by the status its head said) and the memory comes back.

Each client reads at least the first byte of its answer, so each request reached the edge;
then it hangs up, cleanly or with a reset, after a random share of the body (up to 1 MB, so
the test stays short) of a body in the memory cache (whole, or in pieces), of a local file
streamed from disk, or of a range. A client that stays but stops reading is cut at
``http.send_timeout``, and its request ends the same way.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import socket
import struct
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pythonhosted.web.server import Bind, free_port
from support.edge import Sample, edge_process, stored_wheel
from support.memory import resident, settled
from support.processes import wait_until

CLIENTS = 600
WARM_UP = 100  # clients that leave before the idle size is read: what idle means
AT_ONCE = 100
READ_AT_MOST = 2**20
BACK_TO_IDLE = 1.2  # of the idle resident size, as in test_memory
RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
SPARE_DESCRIPTORS = 8


def descriptors(pid: int) -> int:
    """How many descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


async def leave_at_random(bind: Bind, sample: Sample, rng: random.Random) -> None:
    """Ask for ``sample`` (or a range of it), read a random part of the answer, hang up."""
    size = len(sample.data)
    start = rng.randrange(size) if rng.random() < 0.25 else 0
    ranged = f"Range: bytes={start}-\r\n" if start else ""
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rng.choice((4096, 16384, 2**18)))
        sock.setblocking(False)
        await loop.sock_connect(sock, (bind.host, bind.port))
        request = f"GET {sample.path} HTTP/1.1\r\nHost: x\r\n{ranged}\r\n"
        await loop.sock_sendall(sock, request.encode())
        leave_after = rng.randint(1, min(size - start, READ_AT_MOST))
        read = 0
        while read < leave_after:
            chunk = await loop.sock_recv(sock, min(65536, leave_after - read))
            assert chunk, "the edge hung up first"
            read += len(chunk)
        if rng.random() < 0.5:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)


async def leaving(bind: Bind, samples: list[Sample], count: int, seed: int) -> None:
    rng = random.Random(seed)
    room = asyncio.Semaphore(AT_ONCE)

    async def one(client: random.Random) -> None:
        async with room:
            await leave_at_random(bind, client.choice(samples), client)

    clients = [random.Random(rng.random()) for _ in range(count)]
    await asyncio.wait_for(asyncio.gather(*(one(client) for client in clients)), timeout=120)


class Scrapes:
    """The edge's /metrics, read through one client that counts its reads (each is a 200)."""

    def __init__(self, bind: Bind) -> None:
        self.url = f"{bind.url()}/metrics"
        self.count = 0

    def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        text = httpx.get(self.url).text
        self.count += 1
        return {
            tuple(sorted(found.labels.items())): found.value
            for family in text_string_to_metric_families(text)
            for found in family.samples
            if found.name == name
        }

    def in_flight(self) -> float:
        return self.samples("files_requests_in_flight")[()]


def test_requests_of_clients_that_leave_all_end_and_their_memory_comes_back(
    tmp_path: Path,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < AT_ONCE + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, AT_ONCE + 256), hard))
    primary = f"file://{tmp_path}/primary"
    samples = [
        stored_wheel(primary, "small-wheel", 100_000),  # cached whole
        stored_wheel(primary, "mid-wheel", 5 * 2**20),  # cached in pieces
        stored_wheel(primary, "huge-wheel", 24 * 2**20),  # over the cache's limit: from disk
    ]
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind) as edge:
        for sample in samples:  # the cached ones in the cache, as in any idle edge
            assert httpx.get(f"{bind.url()}{sample.path}", timeout=60).content == sample.data
        asyncio.run(leaving(bind, samples, WARM_UP, seed=1))
        scrapes = Scrapes(bind)
        wait_until(lambda: scrapes.in_flight() == 1, timeout=60)
        idle = settled(edge.pid)
        idle_descriptors = descriptors(edge.pid)
        asyncio.run(leaving(bind, samples, CLIENTS, seed=2))
        wait_until(lambda: scrapes.in_flight() == 1, timeout=60)
        earlier = scrapes.count  # this read of the counts is not in them yet
        answered = scrapes.samples("files_requests_total")
        back = wait_until(lambda: (now := resident(edge.pid)) <= idle * BACK_TO_IDLE and now)
        # Files and connections closed too (a few of the edge's own may come and go).
        wait_until(lambda: descriptors(edge.pid) <= idle_descriptors + SPARE_DESCRIPTORS)
    assert set(answered) <= {(("status", "200"),), (("status", "206"),)}
    assert sum(answered.values()) == len(samples) + WARM_UP + CLIENTS + earlier
    assert back <= idle * BACK_TO_IDLE


def received_until_cut(sock: socket.socket) -> int:
    """Read what the edge sent until it closed the connection (or the kernel reset it)."""
    received = 0
    try:
        while chunk := sock.recv(65536):
            received += len(chunk)
    except ConnectionResetError:
        pass
    return received


@pytest.mark.parametrize("size", [5 * 2**20, 24 * 2**20], ids=["cached", "local-file"])
def test_a_client_that_stops_reading_is_cut_at_the_send_timeout(tmp_path: Path, size: int) -> None:
    """It keeps its connection but takes nothing: neither the edge nor granian would end
    its response (the body waits for room that never comes), so the kernel closes the
    connection once the client has taken nothing for ``http.send_timeout``; the response
    then ends like any whose client left, with everything it held."""
    primary = f"file://{tmp_path}/primary"
    wheel = stored_wheel(primary, "stalled-wheel", size)
    bind = Bind("127.0.0.1", free_port())
    settings = {"PYTHONHOSTED_HTTP__SEND_TIMEOUT": "1"}
    with edge_process(tmp_path, primary, bind, settings=settings):
        scrapes = Scrapes(bind)
        with socket.create_connection((bind.host, bind.port), timeout=60) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET {wheel.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            # ...and reads no more, until the response has ended.
            wait_until(lambda: scrapes.in_flight() == 1, timeout=60)
            received = received_until_cut(sock)
        earlier = scrapes.count
        answered = scrapes.samples("files_requests_total")
    assert received < size
    assert answered == {(("status", "200"),): earlier + 1}
