"""What slow readers of a large cached image cost camo in memory.

Bounds are generous (about twice what BENCHMARKS.md measured) and every wait is on a
condition with a deadline: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import resource
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from pythonhosted.camo import sign_url
from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.memory import back_after, resident, settled, slow_readers
from support.processes import started

if TYPE_CHECKING:
    from conftest import Upstream

KEY = "memory-key"
READERS = 300
SIZE = 80 * 65536  # 5 MB, camo's largest image: more than the kernel takes of a client at once
#: measured ~150 KB a slow reader at the peak (16 KB pieces); 64 KB messages: ~490 KB
PER_CONNECTION_LIMIT = 300 * 1024
BACK_TO_IDLE = 1.3
ROUNDS = 12  # each reader takes a piece per round: slow, but reading


def _read_slowly(readers: list[socket.socket], pid: int) -> int:
    """Every reader takes up to 16 KB; then camo's resident size."""
    for sock in readers:
        sock.recv(16384)
    time.sleep(0.25)  # the pace of a slow reader, not a wait for anything
    return resident(pid)


def test_slow_readers_of_a_large_cached_image_hold_little(
    upstream: Upstream, tmp_path: Path
) -> None:
    """An image from the disk tier went out in 64 KB messages as fast as granian queued them:
    300 clients that read slowly had ~490 KB each held for them (5,000 clients of one 1 MB
    image: 1.8 GB). Now it goes out as the files edge sends a local file, small pieces until
    the client shows it reads fast, a few of them queued at most."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < READERS + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, READERS + 256), hard))
    bind = Bind("127.0.0.1", free_port())
    command = [sys.executable, "-m", "pythonhosted", "camo", "serve", "--workers=1"]
    command += [f"--bind={bind.host}:{bind.port}", "--allow-network=127.0.0.2/32"]
    command += [f"--cache-dir={tmp_path / 'cache'}", "--timeout=30s"]
    env = {
        "PYTHONHOSTED_CAMO_KEY": KEY,
        "PATH": "/usr/bin:/bin",
        "PYTHONHOSTED_HTTP__SEND_TIMEOUT": "600",  # the readers stay through the measurement
    }
    path = sign_url(f"{upstream.base}/chunked?chunks=80&size=65536", KEY.encode())
    with started(command, env=env) as camo:
        wait_for_port(bind, timeout=60, process=camo)
        first = httpx.get(bind.url() + path, timeout=60)
        assert (first.status_code, len(first.content)) == (200, SIZE)
        hit = httpx.get(bind.url() + path, timeout=60)
        assert (hit.headers["x-camo-cache"], hit.content) == ("HIT", first.content)
        for sock in slow_readers(bind, path, 20):  # served before: what idle means
            sock.close()
        idle = settled(camo.pid)
        readers = slow_readers(bind, path, READERS)
        try:
            loaded = max(_read_slowly(readers, camo.pid) for _ in range(ROUNDS))
        finally:
            back = back_after(readers, camo.pid, idle, BACK_TO_IDLE)
    assert (loaded - idle) / READERS < PER_CONNECTION_LIMIT
    assert back <= idle * BACK_TO_IDLE
