"""Benchmark: camo against nginx as a plain reverse proxy of the same upstream, cache hits
against an nginx ``proxy_cache`` hit, plus memory.

    .venv/bin/python bench/camo.py [--duration 10] [--connections 64] [--workers 2] [--slow 500]
                                   [--distinct 10000]

Needs ``nginx`` and ``wrk`` (Debian: ``apt-get install nginx wrk``); benchmark only.

1. An nginx upstream (``--workers`` workers) serves a 20 KB PNG, and the same file trickled at
   2 KB/s.
2. Two nginx reverse proxies of that upstream with keep-alive connections: 1 worker and
   ``--workers`` workers.
3. Two ``pythonhosted camo serve`` instances proxying the same upstream: one process and
   ``--workers N``.
4. wrk drives each proxy with ``--connections`` connections (nginx 1, camo 1, nginx N, camo N):
   requests/s and p99 latency, and the 1-vs-1 and N-vs-N ratios.
5. ``--slow`` concurrent requests through the one-process camo to the trickling file: camo's RSS
   while they are all in flight, against its RSS when idle.
6. Cache hits: an nginx with ``proxy_cache`` (1 worker) and a ``camo serve --cache-dir`` (one
   process), each warmed with the PNG, then driven by wrk like the others: the ratio and CPU
   per request.
7. ``--distinct`` different images (the PNG under as many URLs) put in that camo's cache: its
   RSS, cache bytes by tier and entries, then a second pass to show they are hits.

Everything listens on 127.0.0.1 temporary ports; every process is started here (in its own
process group) and stopped by PID; the run takes about 4 x duration + 20 s.
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
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import aiohttp

from loadgen import machine, wrk
from pythonhosted.camo import sign_url
from pythonhosted.web.server import Bind, free_port, wait_for_port

KEY = b"bench-key"
PNG_BYTES = 20 * 1024
TRICKLE_RATE = "2k"

NGINX_CONF = """
daemon off;
worker_processes {workers};
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
CACHE_SERVER = """
    proxy_cache_path {tmp}/nginx-cache levels=1:2 keys_zone=img:10m max_size=1g inactive=60m
                     use_temp_path=off;
    upstream cached_images {{ server 127.0.0.1:{upstream}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://cached_images;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache img;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
        }}
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
    """Run ``command`` until the block ends; yield its PID once ``bind`` accepts connections.

    The command gets a process group of its own (group id = its PID), so the workers it forks
    can be stopped by that id if SIGTERM to the parent does not take them down.
    """
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
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
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of this group only


@contextmanager
def nginx(tmp: Path, name: str, server: str, bind: Bind, workers: int) -> Iterator[int]:
    """An nginx with its own config, pid file and logs under ``tmp``, in the foreground."""
    conf = tmp / f"nginx-{name}.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, name=name, server=server, workers=workers))
    with process(["nginx", "-p", str(tmp), "-c", str(conf)], bind) as pid:
        yield pid


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


def camo_serve(bind: Bind, workers: int, cache_dir: Path | None = None) -> list[str]:
    command = [
        str(Path(sys.executable).parent / "pythonhosted"),
        "camo",
        "serve",
        f"--bind=127.0.0.1:{bind.port}",
        f"--workers={workers}",
        "--allow-network=127.0.0.1/32",
        "--timeout=60s",
    ]
    return command if cache_dir is None else [*command, f"--cache-dir={cache_dir}"]


async def fetch_all(urls: list[str], concurrency: int = 32) -> int:
    """GET every URL, ``concurrency`` at a time; how many were 200 with the whole PNG."""
    ok = 0
    queue = list(urls)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal ok
            while queue:
                async with session.get(queue.pop()) as response:
                    body = await response.read()
                    ok += response.status == 200 and len(body) == PNG_BYTES

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def scrape(url: str, series: dict[str, str]) -> dict[str, float]:
    """The values of ``series`` (short name -> series) in a /metrics page."""
    lines = urllib.request.urlopen(url).read().decode().splitlines()
    return {
        short: next(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + " "))
        for short, name in series.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--distinct", type=int, default=10_000)
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install nginx wrk")
    n = args.workers

    with tempfile.TemporaryDirectory(prefix="camo-bench-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)  # nginx workers run unprivileged and must read www/
        (tmp / "www").mkdir()
        (tmp / "www" / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(PNG_BYTES - 8))
        upstream, proxy_1, proxy_n, camo_1, camo_n, cache_nginx, cache_camo = (
            Bind("127.0.0.1", free_port()) for _ in range(7)
        )
        upstream_conf = UPSTREAM_SERVER.format(port=upstream.port, tmp=tmp, rate=TRICKLE_RATE)
        stack.enter_context(nginx(tmp, "upstream", upstream_conf, upstream, n))
        proxy_conf = PROXY_SERVER.format(port=proxy_1.port, upstream=upstream.port)
        nginx_1 = stack.enter_context(nginx(tmp, "proxy-1", proxy_conf, proxy_1, 1))
        proxy_conf = PROXY_SERVER.format(port=proxy_n.port, upstream=upstream.port)
        nginx_n = stack.enter_context(nginx(tmp, "proxy-n", proxy_conf, proxy_n, n))
        env = {**os.environ, "PYTHONHOSTED_CAMO_KEY": KEY.decode()}
        camo_pid = stack.enter_context(process(camo_serve(camo_1, 1), camo_1, env))
        camo_n_pid = stack.enter_context(process(camo_serve(camo_n, n), camo_n, env))
        signed = sign_url(f"{upstream.url()}/img.png", KEY)
        for camo in (camo_1, camo_n):
            try:
                urllib.request.urlopen(camo.url() + signed).close()
            except urllib.error.HTTPError as exc:
                sys.exit(f"camo does not proxy the image: {exc} {exc.headers['X-Camo-Error']}")
        # interleaved, so drift in the machine's load hits both sides of each ratio alike
        targets = {
            "nginx 1": (f"{proxy_1.url()}/img.png", nginx_1),
            "camo 1": (camo_1.url() + signed, camo_pid),
            "nginx n": (f"{proxy_n.url()}/img.png", nginx_n),
            "camo n": (camo_n.url() + signed, camo_n_pid),
        }
        runs = {
            name: wrk(url, pgid, args.connections, args.duration)
            for name, (url, pgid) in targets.items()
        }
        idle = rss_kib(camo_pid)
        slow_url = camo_1.url() + sign_url(f"{upstream.url()}/trickle/img.png", KEY)
        ok, peak, seconds = asyncio.run(slow_clients(slow_url, args.slow, camo_pid))

        cache_conf = CACHE_SERVER.format(tmp=tmp, port=cache_nginx.port, upstream=upstream.port)
        nginx_cache = stack.enter_context(nginx(tmp, "cache", cache_conf, cache_nginx, 1))
        cache_dir = tmp / "camo-cache"
        camo_cache = stack.enter_context(
            process(camo_serve(cache_camo, 1, cache_dir), cache_camo, env)
        )
        cache_targets = {
            "nginx cache": (f"{cache_nginx.url()}/img.png", nginx_cache),
            "camo cache": (cache_camo.url() + signed, camo_cache),
        }
        for url, _ in cache_targets.values():  # warm: the runs measure hits only
            urllib.request.urlopen(url).close()
        for name, (url, pgid) in cache_targets.items():
            runs[name] = wrk(url, pgid, args.connections, args.duration)
        cached_idle = rss_kib(camo_cache)
        distinct = [
            cache_camo.url() + sign_url(f"{upstream.url()}/img.png?n={i}", KEY)
            for i in range(args.distinct)
        ]
        started = time.monotonic()
        filled = asyncio.run(fetch_all(distinct))
        fill_seconds = time.monotonic() - started
        cached_full = rss_kib(camo_cache)
        started = time.monotonic()
        hits = asyncio.run(fetch_all(distinct))
        hit_seconds = time.monotonic() - started
        series = {
            "memory_bytes": 'camo_cache_bytes{tier="memory"}',
            "disk_bytes": 'camo_cache_bytes{tier="disk"}',
            "memory_entries": 'camo_cache_entries{tier="memory"}',
            "disk_entries": 'camo_cache_entries{tier="disk"}',
            "hits": 'camo_cache_responses_total{result="hit"}',
        }
        held = scrape(cache_camo.url() + "/metrics", series)
        cached_after = rss_kib(camo_cache)

    print(f"machine: {machine()}")
    print(f"proxying a 20 KB PNG, {args.connections} connections, {args.duration} s each (wrk)")
    print(f"upstream: nginx, {n} workers; CPU = the proxy's processes' CPU time per request")
    for count, label in (("1", "1"), ("n", str(n))):
        for proxy in ("nginx", "camo"):
            run = runs[f"{proxy} {count}"]
            print(
                f"  {proxy:5} ({label} worker(s)): {run.rps:7.0f} req/s   p99 {run.p99_ms:6.1f} ms"
                f"   CPU {run.cpu_us:4.0f} us/req"
            )
        nginx_run, camo_run = runs[f"nginx {count}"], runs[f"camo {count}"]
        print(f"  camo / nginx, {label} vs {label}: {camo_run.rps / nginx_run.rps:.2f}x")
    print(f"{args.slow} concurrent requests to an upstream trickling 20 KB at {TRICKLE_RATE}B/s:")
    print(f"  completed {ok}/{args.slow} in {seconds:.1f} s (camo, one process)")
    print(f"  camo RSS idle {idle / 1024:.1f} MiB, peak in flight {peak / 1024:.1f} MiB")
    print(f"cache hits, the same PNG, {args.connections} connections, {args.duration} s each:")
    for name in ("nginx cache", "camo cache"):
        run = runs[name]
        print(
            f"  {name:11} (1 worker): {run.rps:7.0f} req/s   p99 {run.p99_ms:6.1f} ms"
            f"   CPU {run.cpu_us:4.0f} us/req"
        )
    ratio = runs["camo cache"].rps / runs["nginx cache"].rps
    print(f"  camo cache hit / nginx proxy_cache hit: {ratio:.2f}x")
    print(f"{args.distinct} distinct 20 KB images into one camo process's cache (default bounds):")
    print(
        f"  filled {filled}/{args.distinct} in {fill_seconds:.1f} s;"
        f" second pass {hits}/{args.distinct} in {hit_seconds:.1f} s"
    )
    print(
        f"  RSS idle {cached_idle / 1024:.1f} MiB, after filling {cached_full / 1024:.1f} MiB,"
        f" after the second pass {cached_after / 1024:.1f} MiB"
    )
    print(
        f"  memory tier {held['memory_bytes'] / 2**20:.1f} MiB ({held['memory_entries']:.0f}"
        f" images), disk tier {held['disk_bytes'] / 2**20:.1f} MiB ({held['disk_entries']:.0f}"
        f" images), hits {held['hits']:.0f}"
    )


if __name__ == "__main__":
    main()
