"""Benchmark the files edge against nginx serving the same directory, in the same run.

    .venv/bin/python bench/files.py [--duration 10] [--connections 64] [--workers 1]

Needs nginx and wrk (Debian: nginx-light, wrk). Everything listens on 127.0.0.1, every load
is bounded by --duration, and every process started here is stopped by its PID at the end.
Download logging is ON in our service (a local log store), as in production. Each case runs
against our edge, nginx as shipped, and nginx sending the same response headers as our edge;
each line also gives every server's CPU time per request, which other jobs' load disturbs
far less than requests/s.

Each server runs in its best configuration on the benchmark machine: nginx with
``worker_processes auto`` (1 or auto measure the same there), our edge with one worker process.
On two cores that wrk shares, a second granian worker costs more than it brings: a trivial ASGI
app does 40-43k requests/s at 26 us of CPU each in one process, 27-30k at 50-60 us in two
(BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from loadgen import machine, nginx_conf, wrk
from pythonhosted.files.upload import upload
from pythonhosted.storage import open_store
from pythonhosted.web.server import Bind, free_port, wait_for_port

# The response headers the files-edge spec asks for (rules 10, 14, 15, 17), so that nginx+
# sends what our edge sends; the x-pypi-file-* values are constants nginx cannot look up.
SAME_HEADERS = "\n".join(
    f"            add_header {name} {value} always;"
    for name, value in [
        ("Cache-Control", '"max-age=365000000, immutable, public"'),
        ("X-Frame-Options", "deny"),
        ("X-XSS-Protection", '"1; mode=block"'),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Robots-Header", "noindex"),
        ("Access-Control-Allow-Origin", '"*"'),
        ("Access-Control-Allow-Methods", '"GET, OPTIONS"'),
        ("Access-Control-Allow-Headers", "Range"),
        ("Access-Control-Expose-Headers", '"Content-Length, Content-Range, Accept-Ranges"'),
        ("X-PyPI-File-Project", "bench-project"),
        ("X-PyPI-File-Version", "1.0"),
        ("X-PyPI-File-Package-Type", "bdist_wheel"),
        ("X-PyPI-File-Python-Version", "py3"),
    ]
)


def wheel_of_size(name: str, size: int) -> tuple[str, bytes]:
    """A valid wheel of about ``size`` bytes (stored, incompressible payload)."""
    module = name.replace("-", "_")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{module}/payload.bin", os.urandom(size))
        archive.writestr(
            f"{module}-1.0.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n",
        )
        archive.writestr(f"{module}-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
    return f"{module}-1.0-py3-none-any.whl", buffer.getvalue()


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` and all its descendants (the workers), in MB.

    RSS counts the pages forked workers share with their parent once per process; PSS splits
    them, so the PSS sum is what the service really occupies.
    """
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    rss = pss = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
        except OSError:
            continue
        rss += int(re.search(r"^Rss:\s+(\d+)", rollup, re.M).group(1))  # type: ignore[union-attr]
        pss += int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))  # type: ignore[union-attr]
    return rss / 1024, pss / 1024


async def slow_readers(
    bind: Bind, path: str, count: int, seconds: float, pid: int
) -> tuple[float, float]:
    """``count`` clients each reading ``path`` at ~64 KB/s; the server's peak (RSS, PSS)."""
    deadline = time.monotonic() + seconds
    peak = memory_mb(pid)

    async def reader() -> None:
        reader, writer = await asyncio.open_connection(bind.host, bind.port, limit=2**16)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        while time.monotonic() < deadline:
            if not await reader.read(16384):
                break
            await asyncio.sleep(0.25)
        writer.close()

    tasks = [asyncio.create_task(reader()) for _ in range(count)]
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = memory_mb(pid)
        peak = (max(peak[0], now[0]), max(peak[1], now[1]))
    await asyncio.gather(*tasks, return_exceptions=True)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--slow-seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=1, help="our worker processes (nginx: auto)")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/files.py: {tool} not found (apt-get install nginx-light wrk)")

    root = Path(tempfile.mkdtemp(prefix="bench-files-"))
    (root / "tmp").mkdir()
    store_dir = root / "files"
    store = open_store(f"file://{store_dir}")
    small = ("small_pkg-1.0.tar.gz", os.urandom(10 * 1024))
    paths = {
        "10KB": asyncio.run(upload(store, *small)).path,
        "5MB": asyncio.run(upload(store, *wheel_of_size("big-wheel", 5 * 2**20))).path,
        "100MB": asyncio.run(upload(store, *wheel_of_size("huge-wheel", 100 * 2**20))).path,
    }

    ours_bind = Bind("127.0.0.1", free_port())
    nginx_bind = Bind("127.0.0.1", free_port())
    same_bind = Bind("127.0.0.1", free_port())
    (root / "nginx.conf").write_text(
        nginx_conf(
            root,
            f"{root}/nginx-access.log combined buffer=64k",
            f"""    server {{
        listen 127.0.0.1:{nginx_bind.port};
        root {store_dir};
        location / {{ add_header Cache-Control "max-age=365000000, immutable, public"; }}
    }}
    server {{
        listen 127.0.0.1:{same_bind.port};
        root {store_dir};
        location / {{
{SAME_HEADERS}
        }}
    }}""",
        )
    )
    env = {**os.environ, "PYTHONHOSTED_DATA_DIR": str(root / "data")}
    ours = subprocess.Popen(
        [sys.executable, "-m", "pythonhosted", "files", "serve", "--primary", f"file://{store_dir}",
         "--logs", f"file://{root}/logs", "--bind", f"127.0.0.1:{ours_bind.port}",
         "--workers", str(args.workers)],
        env=env, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    nginx = subprocess.Popen(
        ["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)], start_new_session=True
    )
    try:
        wait_for_port(ours_bind)
        wait_for_port(nginx_bind)
        wait_for_port(same_bind)
        cases = [
            ("10 KB file, requests/s", paths["10KB"], [], "rps", 0.5),
            ("5 MB wheel, MB/s", paths["5MB"], [], "mbps", 0.7),
            ("suffix range bytes=-8192 on 5 MB wheel, requests/s", paths["5MB"],
             ["Range: bytes=-8192"], "rps", 0.5),
        ]  # fmt: skip
        print(f"machine: {machine()}")
        print(
            f"wrk -t2 -c{args.connections} -d{args.duration}s; download logging on; ours: "
            f"{args.workers} worker(s), nginx: worker_processes auto\n"
        )
        print("nginx: as shipped (plus Cache-Control); nginx+: also every header the spec asks of")
        print("our responses (security, CORS, x-pypi-file-*), i.e. the same response")
        print("CPU = user + system time of the server's processes per request\n")
        print(
            f"{'case':<52} {'ours':>9} {'nginx':>9} {'ratio':>6} {'nginx+':>9} {'ratio':>6} "
            f"{'target':>6}"
        )
        for label, path, headers, metric, target in cases:
            mine = wrk(ours_bind.url() + path, ours.pid, args.connections, args.duration, headers)
            plain = wrk(
                nginx_bind.url() + path, nginx.pid, args.connections, args.duration, headers
            )
            same = wrk(same_bind.url() + path, nginx.pid, args.connections, args.duration, headers)
            ours_value, plain_value, same_value = (getattr(r, metric) for r in (mine, plain, same))
            print(
                f"{label:<52} {ours_value:>9.1f} {plain_value:>9.1f} "
                f"{ours_value / plain_value:>6.2f} {same_value:>9.1f} "
                f"{ours_value / same_value:>6.2f} {'>=' + str(target):>6}"
            )
            print(
                f"{'':<52} p99 {mine.p99_ms:.1f} / {plain.p99_ms:.1f} / {same.p99_ms:.1f} ms; "
                f"CPU {mine.cpu_us:.0f} / {plain.cpu_us:.0f} / {same.cpu_us:.0f} us/request"
            )
        idle = memory_mb(ours.pid)
        rss, pss = asyncio.run(
            slow_readers(ours_bind, paths["100MB"], 200, args.slow_seconds, ours.pid)
        )
        print("\n200 slow readers of a 100 MB file, all our processes (target < 200 MB):")
        print(
            f"  peak PSS {pss:.0f} MB (idle {idle[1]:.0f}), "
            f"peak RSS sum {rss:.0f} MB (idle {idle[0]:.0f})"
        )
    finally:
        for process in (ours, nginx):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
