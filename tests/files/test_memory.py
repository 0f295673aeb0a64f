"""What many slow downloads cost the edge in memory, and that it gives it back afterwards.

Bounds are generous (twice the targets of BENCHMARKS.md) and every wait is on a condition
with a deadline: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import resource
from pathlib import Path

import httpx

from pythonhosted.web.objects import SEND_PIECE
from pythonhosted.web.server import Bind, free_port
from support.edge import edge_process, stored_wheel
from support.memory import resident, settled, slow_readers
from support.processes import wait_until

READERS = 1000
PER_CONNECTION_LIMIT = 128 * 1024  # target 64 KB (nginx: ~10 KB; the pathsend route: ~290 KB)
BACK_TO_IDLE = 1.2  # of the idle resident size, after the readers left
CACHED_READERS = 200
# One piece in the server per connection, its other bytes (~25 KB) and a margin; with the
# queue full of pieces (five, plus one waiting to get in) it was ~1.5 MB.
CACHED_PER_CONNECTION_LIMIT = SEND_PIECE + 128 * 1024
# The readers take nothing: past http.send_timeout the kernel would close their connections
# in the middle of a measurement on a slow machine (tests/files/test_departures.py has that).
READERS_STAY = {"PYTHONHOSTED_HTTP__SEND_TIMEOUT": "600"}


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


def test_slow_readers_of_a_cached_body_make_the_server_hold_one_piece_each(
    tmp_path: Path,
) -> None:
    """A body from the memory cache goes out a piece at a time, the next only once the server
    has written the last: a client that stops reading leaves one piece's copy in the server,
    not a queue full of them. The body is in the cache (under its 16 MB object limit) and
    larger than what the kernel takes of a client at once (~4 MB on loopback), so every
    reader's queue fills."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < CACHED_READERS + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, CACHED_READERS + 256), hard))
    primary = f"file://{tmp_path}/primary"
    wheel = stored_wheel(primary, "big-wheel", 12 * 2**20)
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind, settings=READERS_STAY) as edge:
        first = httpx.get(f"{bind.url()}{wheel.path}", timeout=60)  # in the cache, served before
        assert first.content == wheel.data
        idle = settled(edge.pid)
        readers = slow_readers(bind, wheel.path, CACHED_READERS)
        holding = idle + CACHED_READERS * SEND_PIECE // 2  # each reader holds a piece
        try:
            # The kernel fills 200 connections' buffers (~4 MB each) before the server holds
            # anything: on a busy machine that can pause long enough to look settled.
            wait_until(lambda: resident(edge.pid) > holding, timeout=60, interval=0.5)
            loaded = settled(edge.pid)
        finally:
            for sock in readers:
                sock.close()
        back = wait_until(lambda: (now := resident(edge.pid)) <= idle * BACK_TO_IDLE and now)
    assert (loaded - idle) / CACHED_READERS < CACHED_PER_CONNECTION_LIMIT
    assert back <= idle * BACK_TO_IDLE


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
    # The cached body, and a piece per reader (a megabyte each): well under four bodies.
    assert loaded - idle < 4 * size
