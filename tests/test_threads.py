"""The process's pools (short I/O never behind the default pool's long work:
tests/storage/test_stores.py) work in a forked child too; long work never holds every turn
at running Python."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from pythonhosted import threads
from pythonhosted.threads import Workers, computing, short_io
from support.processes import wait_until

LONG_CROWD = 64


def test_a_forked_child_runs_work_in_pools_its_parent_had_used() -> None:
    """A pool made before a fork counted the parent's idle threads, so in the child work
    waited for a thread that was never there (a ``--workers`` process forked after start-up
    had used a store)."""
    own = Workers("own", 1)

    async def both() -> tuple[int, int]:
        return await short_io(int, "7"), await own.run(int, "8")

    assert asyncio.run(both()) == (7, 8)  # the parent's threads exist, idle
    pid = os.fork()
    if pid == 0:  # the child: no test machinery here, only its answer as the exit status
        try:
            found = asyncio.run(asyncio.wait_for(both(), 10))
            os._exit(0 if found == (7, 8) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    asyncio.run(own.stop())
    assert os.waitstatus_to_exitcode(status) == 0


def test_short_work_gets_a_turn_while_long_work_waits_for_its_own() -> None:
    """64 threads of long work at once: one holds a turn (held until the end), the other 63
    wait for the long turn, and 64 pieces of short work each get a turn meanwhile. Before,
    two pieces of long work held both turns and short work waited for them."""
    released = threading.Event()
    inside: list[int] = []

    def long_work(n: int) -> int:
        with computing(long=True):
            inside.append(n)
            released.wait(120)
        return n

    def short_work(n: int) -> int:
        with computing():
            return -n

    with ThreadPoolExecutor(2 * LONG_CROWD) as pool:
        held = [pool.submit(long_work, n) for n in range(LONG_CROWD)]
        try:
            wait_until(lambda: len(inside) >= 1, timeout=60)
            short = [pool.submit(short_work, n) for n in range(1, LONG_CROWD + 1)]
            wait_until(lambda: all(piece.done() for piece in short), timeout=60)
            assert len(inside) == threads.LONG_AT_ONCE
        finally:
            released.set()
        assert [piece.result() for piece in short] == [-n for n in range(1, LONG_CROWD + 1)]
        assert [piece.result() for piece in held] == list(range(LONG_CROWD))
    assert sorted(inside) == list(range(LONG_CROWD))
