"""Benchmark: camo against nginx as a plain reverse proxy of the same upstream, plus memory.

    .venv/bin/python bench/camo.py [--duration 10] [--connections 64] [--slow 500]

Needs ``nginx`` and ``wrk`` (Debian: ``apt-get install nginx-light wrk``); benchmark only.

1. An nginx upstream (one worker) serves a 20 KB PNG, and the same file trickled at 2 KB/s.
2. A second nginx (one worker) reverse-proxies that upstream with keep-alive connections.
3. ``pythonhosted camo serve`` (one process) proxies the same upstream.
4. wrk drives each proxy with ``--connections`` connections: requests/s and p99 latency.
5. ``--slow`` concurrent requests through camo to the trickling file: camo's RSS while they are
   all in flight, against its RSS when idle.

Everything listens on 127.0.0.1 temporary ports; every process is started here and stopped by
PID; the run takes about 2 x duration + 15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from pythonhosted.camo import sign_url
from pythonhosted.web.server import Bind, free_port, wait_for_port

KEY = b"bench-key"
PNG_BYTES = 20 * 1024
TRICKLE_RATE = "2k"

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx-{name}.pid;
error_log {tmp}/error-{name}.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    types {{ image/png png; }}
    {server}
}}
"""
UPSTREAM_SERVER = """
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location /trickle/ {{ alias {tmp}/www/; limit_rate {rate}; }}
    }}
"""
PROXY_SERVER = """
    upstream images {{ server 127.0.0.1:{upstream}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://images;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


@contextmanager
def process(command: list[str], bind: Bind, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run ``command`` until the block ends; yield its PID once ``bind`` accepts connections."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(bind)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def nginx(tmp: Path, name: str, server: str, bind: Bind) -> Iterator[int]:
    """An nginx with its own config, pid file and logs under ``tmp``, in the foreground."""
    conf = tmp / f"nginx-{name}.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, name=name, server=server))
    with process(["nginx", "-p", str(tmp), "-c", str(conf)], bind) as pid:
        yield pid


def wrk(url: str, connections: int, duration: int) -> tuple[float, str]:
    """Requests/s and the p99 latency wrk reports."""
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        print(output, file=sys.stderr)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", output).group(1)  # type: ignore[union-attr]
    return rps, p99


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def slow_clients(url: str, count: int, pid: int) -> tuple[int, int, float]:
    """Start ``count`` requests at once; sample RSS while they stream; (ok, peak KiB, seconds)."""
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> bool:
            async with session.get(url) as response:
                body = await response.read()
                return response.status == 200 and len(body) == PNG_BYTES

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        peak = 0
        while not all(task.done() for task in tasks):
            peak = max(peak, rss_kib(pid))
            await asyncio.sleep(0.2)
        results = await asyncio.gather(*tasks, return_exceptions=True)
    return sum(result is True for result in results), peak, time.monotonic() - started


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--slow", type=int, default=500)
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install nginx-light wrk")

    with tempfile.TemporaryDirectory(prefix="camo-bench-") as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)  # nginx workers run unprivileged and must read www/
        (tmp / "www").mkdir()
        (tmp / "www" / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(PNG_BYTES - 8))
        upstream, proxy, camo = (Bind("127.0.0.1", free_port()) for _ in range(3))
        upstream_conf = UPSTREAM_SERVER.format(port=upstream.port, tmp=tmp, rate=TRICKLE_RATE)
        proxy_conf = PROXY_SERVER.format(port=proxy.port, upstream=upstream.port)
        camo_command = [
            str(Path(sys.executable).parent / "pythonhosted"),
            "camo",
            "serve",
            f"--bind=127.0.0.1:{camo.port}",
            "--allow-network=127.0.0.1/32",
            "--timeout=60s",
        ]
        camo_env = {**os.environ, "PYTHONHOSTED_CAMO_KEY": KEY.decode()}
        image = f"{upstream.url()}/img.png"
        with (
            nginx(tmp, "upstream", upstream_conf, upstream),
            nginx(tmp, "proxy", proxy_conf, proxy),
            process(camo_command, camo, camo_env) as camo_pid,
        ):
            try:
                urllib.request.urlopen(camo.url() + sign_url(image, KEY)).close()
            except urllib.error.HTTPError as exc:
                sys.exit(f"camo does not proxy the image: {exc} {exc.headers['X-Camo-Error']}")
            nginx_rps, nginx_p99 = wrk(f"{proxy.url()}/img.png", args.connections, args.duration)
            camo_rps, camo_p99 = wrk(
                camo.url() + sign_url(image, KEY), args.connections, args.duration
            )
            idle = rss_kib(camo_pid)
            slow_url = camo.url() + sign_url(f"{upstream.url()}/trickle/img.png", KEY)
            ok, peak, seconds = asyncio.run(slow_clients(slow_url, args.slow, camo_pid))

    print(f"machine: {machine()}")
    print(f"proxying a 20 KB PNG, {args.connections} connections, {args.duration} s each (wrk)")
    print(f"  nginx (1 worker): {nginx_rps:9.0f} req/s   p99 {nginx_p99}")
    print(f"  camo  (1 proc):   {camo_rps:9.0f} req/s   p99 {camo_p99}")
    print(f"  camo / nginx:     {camo_rps / nginx_rps:9.2f}x")
    print(f"{args.slow} concurrent requests to an upstream trickling 20 KB at {TRICKLE_RATE}B/s:")
    print(f"  completed {ok}/{args.slow} in {seconds:.1f} s")
    print(f"  camo RSS idle {idle / 1024:.1f} MiB, peak in flight {peak / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
