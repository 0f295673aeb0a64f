"""Stream slots: the descriptors requests hold besides their connection, bounded per process.

Through the public Python API (the pool's order, bound and hand-overs) and through a files
edge under a small open-file limit, where streamed downloads used to take it to EMFILE.
"""

from __future__ import annotations

import asyncio
import os
import resource
import selectors
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pythonhosted.web.server import Bind, free_port, wait_for_port
from pythonhosted.web.streams import Busy, StreamSlots, share_out, slots_of
from support.edge import stored_wheel
from support.processes import spawn


def test_slots_go_in_order_of_asking_and_a_wait_is_bounded() -> None:
    async def scenario() -> list[str]:
        slots = StreamSlots(size=1)
        served: list[str] = []
        assert slots.take_now()
        assert not slots.take_now()

        async def wait(name: str) -> None:
            await slots.take(5)
            served.append(name)
            slots.give_back()

        waiting = [asyncio.create_task(wait(name)) for name in ("first", "second", "third")]
        await asyncio.sleep(0)
        with pytest.raises(Busy):
            await slots.take(0.01)
        assert slots.waiting == 3
        slots.give_back()
        await asyncio.gather(*waiting)
        assert (slots.free, slots.waiting) == (1, 0)
        return served

    assert asyncio.run(scenario()) == ["first", "second", "third"]


def test_a_cancelled_or_timed_out_wait_loses_no_slot() -> None:
    async def scenario() -> int:
        slots = StreamSlots(size=1)
        slots.take_now()
        cancelled = asyncio.create_task(slots.take(5))
        timed_out = asyncio.create_task(slots.take(0.05))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(Busy):
            await timed_out
        slots.give_back()  # handed to nobody: both left the line
        assert slots.take_now()
        handed = asyncio.create_task(slots.take(5))
        await asyncio.sleep(0)
        slots.give_back()  # handed over, then the taker is cancelled before it runs
        handed.cancel()
        await asyncio.gather(handed, return_exceptions=True)
        return slots.free

    assert asyncio.run(scenario()) == 1


def test_services_of_one_process_share_the_slots_by_weight() -> None:
    """``serve`` runs the files edge, docs and camo in one process: a flood of slow images
    must not take the slots downloads need."""
    share_out({"test-edge": 3, "test-images": 1})
    try:
        edge, images = slots_of("test-edge"), slots_of("test-images")
        whole = StreamSlots().size
        assert (edge.size, images.size) == (int(whole * 0.75), int(whole * 0.25))
        taken = 0
        while images.take_now():
            taken += 1
        assert taken == images.size
        assert edge.take_now() and edge.free == edge.size - 1
        assert slots_of("test-alone").size == whole  # a service alone has them all
    finally:
        share_out({})


def test_a_pool_is_sized_once_at_its_first_use() -> None:
    """A pool's size comes from the open-file limit in force at its first use, and stays: its
    free count starts from it, and camo sizes each image host's share of its pool from it on
    the host's first image, where working it out again was a ``prlimit64`` system call."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    pool = StreamSlots()
    sized = pool.size
    assert pool.take_now()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft // 2, hard))
    try:
        assert StreamSlots().size < sized  # a pool first used now is sized by the new limit
        assert (pool.size, pool.free) == (sized, sized - 1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


LIMIT = 256  # descriptors: 192 after the reserve, 32 stream slots (of two each)
CLIENTS = 120
SIZE = 1_000_000


def test_streamed_downloads_past_the_open_file_limit_wait_their_turn(tmp_path: Path) -> None:
    """120 clients ask at once for a download the edge streams from a file, under a limit of
    256 descriptors. Each held its connection and the file: with the edge's own descriptors
    that passed the limit, and some answers were 503 (the file would not open) while the
    download log's spool could not open either. Now 32 stream at a time, the others wait their
    turn, and every client gets the whole file."""
    primary = f"file://{tmp_path}/primary"
    wheel = stored_wheel(primary, "streamed-wheel", SIZE)
    bind = Bind("127.0.0.1", free_port())
    command = [
        sys.executable, "-m", "pythonhosted", "files", "serve", "--primary", primary,
        "--logs", f"file://{tmp_path}/logs", "--bind", f"{bind.host}:{bind.port}",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONHOSTED_DATA_DIR": str(tmp_path / "data"),
        "PYTHONHOSTED_FILES__CACHE_OBJECT_MAX_BYTES": "1024",  # stream it from the file
    }
    shell = ["bash", "-c", f'ulimit -n {LIMIT} && exec "$@"', "edge", *command]
    process = spawn(shell, env=env, stderr=subprocess.PIPE)
    try:
        wait_for_port(bind, timeout=60, process=process)
        bodies = _download_at_once(bind, wheel.path, CLIENTS)
    finally:
        os.killpg(process.pid, 15)
        _, stderr = process.communicate(timeout=60)
    assert [status for status, _ in bodies] == [200] * CLIENTS
    assert all(body == wheel.data for _, body in bodies)
    logged = stderr.decode()
    assert "Too many open files" not in logged and "Traceback" not in logged


def _download_at_once(bind: Bind, path: str, count: int) -> list[tuple[int, bytes]]:
    """Send ``count`` requests for ``path`` before reading any answer, then read them all
    (one connection each, closed by the server after its answer)."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((bind.host, bind.port), timeout=60)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        sockets.append(sock)
    received = {sock: bytearray() for sock in sockets}
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        open_ = count
        while open_:
            events = selector.select(timeout=60)
            assert events, "the edge stopped answering"
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                chunk = sock.recv(1 << 20)
                if chunk:
                    received[sock] += chunk
                else:
                    selector.unregister(sock)
                    sock.close()
                    open_ -= 1
    answers = []
    for sock in sockets:
        head, _, body = bytes(received[sock]).partition(b"\r\n\r\n")
        answers.append((int(head.split(b" ", 2)[1]), body))
    return answers
