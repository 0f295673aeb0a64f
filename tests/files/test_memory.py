"""What many slow downloads cost the edge in memory, and that it gives it back afterwards.

Bounds are generous (twice the targets of BENCHMARKS.md) and every wait is on a condition
with a deadline: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import resource
from pathlib import Path

from pythonhosted.web.server import Bind, free_port
from support.edge import edge_process, stored_wheel
from support.memory import resident, settled, slow_readers
from support.processes import wait_until

READERS = 1000
PER_CONNECTION_LIMIT = 128 * 1024  # target 64 KB (nginx: ~10 KB; the pathsend route: ~290 KB)
BACK_TO_IDLE = 1.2  # of the idle resident size, after the readers left


def test_slow_downloads_are_small_and_their_memory_comes_back(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < READERS + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, READERS + 256), hard))
    primary = f"file://{tmp_path}/primary"
    wheel = stored_wheel(primary, "huge-wheel", 24 * 2**20)  # over the memory cache's limit
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind) as edge:
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
