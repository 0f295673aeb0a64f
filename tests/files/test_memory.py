"""What many slow downloads cost the edge in memory, and that it gives it back afterwards.

Bounds are generous (twice the targets of BENCHMARKS.md) and every wait is on a condition
with a deadline: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import gzip
import re
import resource
import socket
import time
from pathlib import Path

import httpx
import pytest

from pythonhosted.distributions import storage_key
from pythonhosted.storage import open_store
from pythonhosted.web.server import Bind, free_port
from support.edge import edge_process, stored_wheel
from support.flood import fetch_all
from support.memory import peak, resident, settled, slow_readers
from support.processes import wait_until

READERS = 1000
PER_CONNECTION_LIMIT = 128 * 1024  # target 64 KB (nginx: ~10 KB; the pathsend route: ~290 KB)
BACK_TO_IDLE = 1.2  # of the idle resident size, after the readers left
# The readers take nothing: past http.send_timeout the kernel would close their connections
# in the middle of a measurement on a slow machine (tests/files/test_departures.py has that).
READERS_STAY = {"PYTHONHOSTED_HTTP__SEND_TIMEOUT": "600"}


def in_flight(bind: Bind) -> int:
    """The edge's requests in flight, the scrape asking included."""
    text = httpx.get(f"{bind.url()}/metrics", timeout=30).text
    found = re.search(r"^files_requests_in_flight (\S+)$", text, re.MULTILINE)
    assert found is not None
    return int(float(found.group(1)))


def test_slow_downloads_are_small_and_their_memory_comes_back(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < READERS + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, READERS + 256), hard))
    primary = f"file://{tmp_path}/primary"
    wheel = stored_wheel(primary, "huge-wheel", 24 * 2**20)  # over the memory cache's limit
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind, settings=READERS_STAY) as edge:
        for sock in slow_readers(bind, wheel.path, 20):  # served before: what idle means
            sock.close()
        idle = settled(edge.pid)
        readers = slow_readers(bind, wheel.path, READERS)
        try:
            loaded = settled(edge.pid)  # every connection's queue is full
        finally:
            for sock in readers:
                sock.close()
        back = wait_until(lambda: (now := resident(edge.pid)) <= idle * BACK_TO_IDLE and now)
    assert loaded > idle * BACK_TO_IDLE, "the readers should have pushed it past the bound"
    assert (loaded - idle) / READERS < PER_CONNECTION_LIMIT
    assert back <= idle * BACK_TO_IDLE


def test_slow_readers_of_a_cached_body_are_small_and_their_memory_comes_back(
    tmp_path: Path,
) -> None:
    """A body from the memory cache goes out in small pieces until its client has shown it
    keeps up, a piece at a time: a client that stops reading leaves one small piece in the
    server, not a megabyte (1 MB pieces: ~1,050 KB per connection). The body is in the cache
    (under its 16 MB object limit) and far larger than what the kernel takes of a client at
    once, so every reader stops the response (and stays in flight: the server may hold no
    copy of its piece, which the cache holds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < READERS + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, READERS + 256), hard))
    primary = f"file://{tmp_path}/primary"
    wheel = stored_wheel(primary, "big-wheel", 12 * 2**20)
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind, settings=READERS_STAY) as edge:
        first = httpx.get(f"{bind.url()}{wheel.path}", timeout=60)  # in the cache, served before
        assert first.content == wheel.data
        for sock in slow_readers(bind, wheel.path, 20):
            sock.close()
        idle = settled(edge.pid)
        readers = slow_readers(bind, wheel.path, READERS)
        try:
            # The kernel fills 1,000 connections' buffers before every response stops: on a
            # busy machine that can pause long enough to look settled.
            wait_until(lambda: in_flight(bind) > READERS, timeout=60, interval=0.5)
            loaded = settled(edge.pid)
        finally:
            for sock in readers:
                sock.close()
        back = wait_until(lambda: (now := resident(edge.pid)) <= idle * BACK_TO_IDLE and now)
    assert (loaded - idle) / READERS < PER_CONNECTION_LIMIT
    assert back <= idle * BACK_TO_IDLE


def test_a_cached_body_reaches_a_client_that_pauses_whole(tmp_path: Path) -> None:
    """A client with a small window that reads fast, stops for a while, then reads again:
    its pieces become small when it stops (cut from the stored ones past the first few) and
    large again later; every byte arrives once, in order, on both routes (stopping in the
    first, small pieces, and past them in the large ones)."""
    primary = f"file://{tmp_path}/primary"
    wheel = stored_wheel(primary, "big-wheel", 6 * 2**20 + 12345)
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind, settings=READERS_STAY):
        assert httpx.get(f"{bind.url()}{wheel.path}", timeout=60).content == wheel.data
        for pause_at in (100_000, 3 * 2**20 + 5):
            assert download_pausing(bind, wheel.path, pause_at) == wheel.data


def download_pausing(bind: Bind, path: str, pause_at: int) -> bytes:
    """A GET's body, read with a 16 KB receive buffer, stopping 1.5 s (long enough for the
    kernel's buffers to fill) once ``pause_at`` bytes of it arrived.

    With a network's segment size (1460 bytes): loopback's own (~64 KB) is larger than the
    window, so every segment waited for the delayed-ACK timer and 6 MB took 38 s instead of
    0.01 s (84 s for this test, which now takes the two pauses and little more)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
        sock.settimeout(30)
        sock.connect((bind.host, bind.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, body = received.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
        chunks, got, paused = [body], len(body), False
        while got < length:
            if not paused and got >= pause_at:
                paused = True
                time.sleep(1.5)
            chunk = sock.recv(65536)
            assert chunk, f"cut short at {got} of {length}"
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


def test_first_readers_of_a_body_share_one_copy(tmp_path: Path) -> None:
    """Requests that all arrive before a body is in the memory cache wait for one read of it,
    and share what that read made: each splitting the bytes into pieces for itself made 20
    slow first readers of a 12 MB wheel hold 20 copies (~250 MB)."""
    primary = f"file://{tmp_path}/primary"
    size = 12 * 2**20
    wheel = stored_wheel(primary, "big-wheel", size)
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind, settings=READERS_STAY) as edge:
        idle = settled(edge.pid)
        readers = slow_readers(bind, wheel.path, 20)
        try:
            wait_until(lambda: resident(edge.pid) > idle + size, timeout=60, interval=0.5)
            loaded = settled(edge.pid)
        finally:
            for sock in readers:
                sock.close()
    # The cached body, a piece per reader, and what the allocator keeps of the fill's
    # transient copies (the read, the split into pieces; glibc raises its mmap threshold
    # after a large free, so later large buffers come from the heap and stay): 17 MB on a
    # quiet machine, 57 MB once under load. 20 copies, the class this is about, are 240 MB.
    assert loaded - idle < 8 * size


@pytest.mark.parametrize(
    ("suffix", "asked"),
    [
        (".whl", {}),
        # a sidecar compressed on request: its bytes and the compressed form, both in memory
        (".whl.metadata", {"Accept-Encoding": "gzip"}),
    ],
)
def test_cold_requests_for_many_objects_read_at_most_the_cache_budget_into_memory(
    tmp_path: Path, suffix: str, asked: dict[str, str]
) -> None:
    """64 requests at once for 64 distinct uncached objects that each fit the memory cache:
    what is read into memory at once stays within the cache's budget (the rest go out as
    stored, streamed). Each was read whole at once, nothing bounding how many: 100 distinct
    12 MB wheels took an edge with a 128 MB cache to a 2.2 GB peak."""
    count, size, budget = 64, 2 * 2**20, 4 * 2**20
    primary = f"file://{tmp_path}/primary"
    paths = [
        f"/{storage_key(f'{n:064x}', f'blob_{n}-1.0-py3-none-any{suffix}')}" for n in range(count)
    ]
    contents = [f"{n:08d}".encode() * (size // 8) for n in range(count)]

    async def store_all() -> None:
        store = open_store(primary)
        for path, data in zip(paths, contents, strict=True):
            await store.put(path[1:], data)

    asyncio.run(store_all())
    cache = {
        "PYTHONHOSTED_FILES__CACHE_MAX_BYTES": str(budget),
        "PYTHONHOSTED_FILES__CACHE_OBJECT_MAX_BYTES": str(size),
    }
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind, settings=cache) as edge:
        assert httpx.get(bind.url() + paths[0]).status_code == 200  # every route warmed up
        idle = settled(edge.pid)
        requests = [(path, asked) for path in paths[1:]]
        answers = asyncio.run(fetch_all(bind.url(), requests, concurrency=count))
        grew = peak(edge.pid) - idle
    received = [
        (a.status, gzip.decompress(a.body) if "content-encoding" in a.headers else a.body)
        for a in answers
    ]
    assert received == [(200, data) for data in contents[1:]]
    assert grew < count * size // 2, f"{grew / 2**20:.0f} MB more at the peak"
