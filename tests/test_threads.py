"""The process's pools (short I/O never behind the default pool's long work:
tests/storage/test_stores.py) work in a forked child too."""

from __future__ import annotations

import asyncio
import os

from pythonhosted.threads import Workers, short_io


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
