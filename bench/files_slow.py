"""Memory of the files edge under many slow downloads, against nginx in the same run.

    .venv/bin/python bench/files_slow.py [--readers 1000] [--seconds 10] [--size-mb 100]
        [--read-kb 16] [--every 0.25]

``--readers`` clients each start a GET of one large file and read ``--read-kb`` every
``--every`` seconds (about 64 KB/s by default) for ``--seconds``, then all hang up at once.
Files up to the memory cache's object limit (16 MB by default) are served from memory,
larger ones as a paced file stream. For each server (our edge, one worker; nginx) the
script prints its resident memory idle (after ten short downloads and a pause: a server that
has served), at the peak, and 1, 3 and 5 seconds after the clients left, and the growth
per connection ((peak - idle) / readers). Targets (issue 17): at most 64 KB per connection,
and back within 20 % of idle a few seconds after they leave.
Everything listens on 127.0.0.1; every process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from files import memory_mb, wheel_of_size
from loadgen import machine, nginx_conf
from pythonhosted.files.upload import upload
from pythonhosted.storage import open_store
from pythonhosted.web.server import Bind, free_port, wait_for_port

AFTER = (1.0, 3.0, 5.0)


async def slow_readers(
    bind: Bind, path: str, count: int, seconds: float, pid: int, read: int, every: float
) -> tuple[float, int]:
    """``count`` clients reading ``path``, ``read`` bytes every ``every`` seconds, for
    ``seconds``; the peak RSS (MB) and the bytes they received in all."""
    deadline = time.monotonic() + seconds
    peak = memory_mb(pid)[0]
    received = 0

    async def reader() -> None:
        nonlocal received
        reader, writer = await asyncio.open_connection(bind.host, bind.port, limit=2**16)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            while (left := deadline - time.monotonic()) > 0:
                try:
                    data = await asyncio.wait_for(reader.read(read), left)
                except TimeoutError:
                    break
                if not data:
                    break
                received += len(data)
                await asyncio.sleep(every)
        finally:
            writer.close()

    tasks = [asyncio.create_task(reader()) for _ in range(count)]
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        peak = max(peak, memory_mb(pid)[0])
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        print(f"  {len(failed)} readers failed, e.g. {failed[0]!r}")
    return peak, received


def measure(name: str, bind: Bind, path: str, pid: int, args: argparse.Namespace) -> None:
    pace = (args.read_kb * 1024, args.every)
    # "Idle" is a server that has served before (code paths loaded, caches and allocator
    # pools set up), as a production edge always is: ten short readers, then quiet.
    asyncio.run(slow_readers(bind, path, 10, 1.0, pid, pace[0], pace[1]))
    time.sleep(max(AFTER))
    idle = memory_mb(pid)[0]
    peak, received = asyncio.run(slow_readers(bind, path, args.readers, args.seconds, pid, *pace))
    closed = time.monotonic()
    after = []
    for mark in AFTER:
        time.sleep(max(0.0, closed + mark - time.monotonic()))
        after.append(memory_mb(pid)[0])
    per_connection = (peak - idle) * 1024 / args.readers
    print(
        f"{name:<8} idle {idle:6.1f} MB  peak {peak:6.1f} MB  "
        f"{per_connection:6.1f} KB/connection  read {received / args.readers / 1024:,.0f} KB each"
        "  after "
        + " / ".join(
            f"{mark:.0f}s {value:.1f} MB ({value / idle:.2f}x)"
            for mark, value in zip(AFTER, after, strict=True)
        )
        + f"  load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size-mb", type=float, default=100)
    parser.add_argument("--read-kb", type=int, default=16, help="what a reader takes at a time")
    parser.add_argument("--every", type=float, default=0.25, help="seconds between its reads")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-nginx", action="store_true", help="measure our edge only")
    args = parser.parse_args()
    if not args.no_nginx and shutil.which("nginx") is None:
        sys.exit("bench/files_slow.py: nginx not found (apt-get install nginx-light)")

    root = Path(tempfile.mkdtemp(prefix="bench-files-slow-"))
    (root / "tmp").mkdir()
    store_dir = root / "files"
    big = wheel_of_size("huge-wheel", int(args.size_mb * 2**20))
    path = asyncio.run(upload(open_store(f"file://{store_dir}"), *big)).path
    ours_bind = Bind("127.0.0.1", free_port())
    nginx_bind = Bind("127.0.0.1", free_port())
    (root / "nginx.conf").write_text(
        nginx_conf(
            root,
            f"{root}/nginx-access.log combined buffer=64k",
            f"    server {{ listen 127.0.0.1:{nginx_bind.port}; root {store_dir}; }}",
        )
    )
    env = {**os.environ, "PYTHONHOSTED_DATA_DIR": str(root / "data")}
    ours = subprocess.Popen(
        [sys.executable, "-m", "pythonhosted", "files", "serve", "--primary", f"file://{store_dir}",
         "--logs", f"file://{root}/logs", "--bind", f"127.0.0.1:{ours_bind.port}",
         "--workers", str(args.workers)],
        env=env, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    servers = [ours]
    if not args.no_nginx:
        servers.append(
            subprocess.Popen(
                ["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)], start_new_session=True
            )
        )
    try:
        wait_for_port(ours_bind)
        if not args.no_nginx:
            wait_for_port(nginx_bind)
        time.sleep(1.0)  # let start-up settle before "idle" is read
        print(f"machine: {machine()}")
        size = f"{args.size_mb:g} MB"
        rate = args.read_kb / args.every
        print(
            f"{args.readers} readers at ~{rate:.0f} KB/s ({args.read_kb} KB every"
            f" {args.every:g} s) of a {size} file for {args.seconds:.0f} s"
        )
        for _ in range(args.rounds):
            measure("ours", ours_bind, path, ours.pid, args)
            if not args.no_nginx:
                measure("nginx", nginx_bind, path, servers[1].pid, args)
    finally:
        for process in servers:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
