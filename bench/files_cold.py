"""Memory of the files edge under a cold burst for many distinct objects that fit its cache.

    .venv/bin/python bench/files_cold.py [--objects 100] [--size-mb 12] [--runs 2] [--src DIR ...]

``--objects`` distinct objects of ``--size-mb`` each (under the memory cache's 16 MB object
limit, so the edge would keep each) are stored in a local directory store; an edge (one
worker, default settings) is started on it and every object is fetched at once, one
connection each, read as fast as the client can. Printed per run: the edge's resident memory
idle, its peak (VmHWM) and what stays after the burst, and the edge's CPU for the burst.
``--src`` takes source trees (``src/`` of another checkout, e.g. ``git archive main src | tar
-x -C /tmp/old``) measured alternately in the same run. Everything listens on 127.0.0.1;
the edge is stopped by its process group.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from loadgen import machine
from pythonhosted.distributions import storage_key
from pythonhosted.web.server import Bind, free_port, wait_for_port

HERE = Path(__file__).parent
MiB = 2**20


def _status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} for {pid}")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _fetch_all(url: str, paths: list[str], size: int) -> None:
    connector = aiohttp.TCPConnector(limit=len(paths))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(path: str) -> None:
            async with session.get(url + path) as response:
                body = await response.read()
                if (response.status, len(body)) != (200, size):
                    raise SystemExit(f"{path}: {response.status}, {len(body)} bytes")

        await asyncio.gather(*(one(path) for path in paths))


def measure(tree: str, store: Path, paths: list[str], size: int, scratch: Path) -> str:
    bind = Bind("127.0.0.1", free_port())
    env = {**os.environ, "PYTHONPATH": tree, "PYTHONHOSTED_DATA_DIR": str(scratch / "data")}
    argv = [sys.executable, "-m", "pythonhosted", "files", "serve", "--primary"]
    argv += [f"file://{store}", "--bind", f"{bind.host}:{bind.port}"]
    edge = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(bind, timeout=60)
        time.sleep(1.0)
        idle, cpu = _status(edge.pid, "VmRSS"), _cpu(edge.pid)
        asyncio.run(_fetch_all(bind.url(), paths, size))
        cpu = _cpu(edge.pid) - cpu
        time.sleep(3.0)
        peak, after = _status(edge.pid, "VmHWM"), _status(edge.pid, "VmRSS")
    finally:
        os.killpg(edge.pid, signal.SIGTERM)
        edge.wait()
    return f"idle {idle:.0f} MB, peak {peak:.0f} MB, 3 s after {after:.0f} MB; CPU {cpu:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--size-mb", type=int, default=12)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--src", action="append", help="a source tree to measure (repeatable)")
    args = parser.parse_args()
    trees = args.src or [str(HERE.parent / "src")]
    size = args.size_mb * MiB
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
        store = Path(scratch) / "store"
        paths = []
        for n in range(args.objects):
            key = storage_key(f"{n:064x}", f"blob_{n}-1.0-py3-none-any.whl")
            (store / key).parent.mkdir(parents=True, exist_ok=True)
            (store / key).write_bytes(os.urandom(size))
            paths.append("/" + key)
        for run in range(args.runs):
            for tree in trees:
                result = measure(tree, store, paths, size, Path(scratch))
                print(f"run {run + 1}, {tree}: {result}")


if __name__ == "__main__":
    main()
