"""Probe: ``pythonhosted serve`` (every service in one process) at production shape.

    .venv/bin/python bench/probe_serve.py [--seconds 60] [--lines 2000000] [--projects 100000]
                                          [--clients 200] [--slow 20] [--dir /tmp/probe-serve]

Builds (once, kept in ``--dir``) a data dir with a catalog of ``--projects`` projects of one
record each (bench/index_root.py's), a few downloadable wheels (one of 32 MB for slow
readers), and before each run drops one log object of ``--lines`` corpus lines
(bench/linehaul.py's) into the logs store, so the embedded ingest converts it and publish
loads it into DuckDB while the probe runs. Then starts ``pythonhosted serve`` and drives, at
the same time and for ``--seconds``:

- downloads: ``--clients`` clients fetching small wheels in a loop, and ``--slow`` raw
  connections reading the 32 MB wheel at 16 KB every 100 ms (still reading at the stop);
- the index: its root page (100k+ projects) and project pages, by 4 clients;
- the stats web: API answers and pages of the corpus's projects (cold, then warm), 8 clients;
- camo: signed URLs (distinct, so each is a miss) of a local upstream on 127.0.0.2, 8 clients;
- ``/_health`` of every service every 50 ms, each on its own connection, from a process of
  its own (the probe's own loop is busy): every service runs on one event loop, so what
  holds the loop or the GIL shows on all of them.

Each second it samples (and every fifth second prints) the server's RSS, open descriptors
and CPU. At the end it stops the server with SIGTERM while the slow readers still read, and
times the stop (``http.drain_timeout``, 20 s, then the cut). Printed: per service the health
p50/p99/slowest, per kind of request the count, statuses, p50/p99/slowest and its 8
slowest requests over 1 s with their time (to set beside the server's log: ingest and
publish log theirs), RSS and descriptors (start, peak, end), the server's CPU seconds, the
stop's time, the machine's CPU model and load. Loopback only; every loop is bounded by
``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType

import aiohttp
from aiohttp import web
from isal import igzip

from loadgen import machine
from pythonhosted.camo import sign_url
from pythonhosted.files.upload import upload
from pythonhosted.samples import wheel_of_size
from pythonhosted.storage import open_store
from pythonhosted.web.server import Bind, free_port, wait_for_port

SERVICES = ("files", "conveyor", "camo", "linehaul", "stats_web")
LOG_PREFIX = "downloads/2021/01/07/20/54/downloads-probe"
SLOW = 1.0  # a request slower than this is printed with its time (the slowest SHOWN per kind)
SHOWN = 8
PNG = b"\x89PNG\r\n\x1a\n" + bytes(40_000)


def bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def prepare(data: Path, projects: int) -> list[str]:
    """The data dir's catalog and wheels; the paths of the wheels (the large one first)."""
    bench_module("index_root").build(data / "files", projects)
    store = open_store(f"file://{data / 'files'}")
    paths = []
    for name, size in (("probe-large", 32 << 20), *((f"probe-{n}", 60_000) for n in range(8))):
        filename, body = wheel_of_size(name, size)
        done = data / f"uploaded-{filename}"
        if not done.exists():
            done.write_text((await upload(store, filename, body)).path)
        paths.append(done.read_text())
    return paths


def drop_log_object(data: Path, lines: int) -> Path:
    """The log object, named anew each run: publish loads a result file once, ever."""
    text = ("\n".join(bench_module("linehaul").corpus(lines, seed=1)) + "\n").encode()
    target = data / "logs" / f"{LOG_PREFIX}-{time.time_ns()}.log.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(igzip.compress(text, 1))
    return target


class Record:
    """Latencies and statuses per kind of request."""

    def __init__(self) -> None:
        self.took: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.slow: dict[str, list[tuple[float, str]]] = defaultdict(list)

    async def get(self, session: aiohttp.ClientSession, kind: str, url: str) -> None:
        began = time.monotonic()
        try:
            async with session.get(url) as response:
                await response.read()
                status = str(response.status)
        except (TimeoutError, aiohttp.ClientError) as error:
            status = type(error).__name__
        took = time.monotonic() - began
        self.took[kind].append(took)
        self.statuses[kind][status] += 1
        if took > SLOW:
            self.slow[kind].append(
                (
                    took,
                    f"{kind} at {time.strftime('%H:%M:%S')}: {took * 1000:.0f} ms {status} {url}",
                )
            )

    def slowest(self) -> list[str]:
        """Per kind, its :data:`SHOWN` slowest requests over :data:`SLOW`, by time of day."""
        out = []
        for kind in sorted(self.slow):
            slowest = sorted(self.slow[kind], reverse=True)[:SHOWN]
            out += [f"    slow: {line}" for _, line in sorted(slowest, key=lambda pair: pair[1])]
        return out

    def lines(self) -> list[str]:
        out = []
        for kind in sorted(self.took):
            took = sorted(self.took[kind])
            p50, p99 = took[len(took) // 2], took[min(len(took) - 1, int(len(took) * 0.99))]
            statuses = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses[kind].items()))
            out.append(
                f"  {kind:<18} {len(took):6d} asked  p50 {p50 * 1000:7.1f} ms  "
                f"p99 {p99 * 1000:7.1f} ms  slowest {took[-1] * 1000:8.1f} ms  [{statuses}]"
            )
        return out


async def repeat(until: float, work: object) -> None:
    while time.monotonic() < until:
        await work()  # type: ignore[operator]


async def slow_reader(bind: Bind, path: str, until: float, record: Record) -> None:
    """One connection reading a large download at 16 KB every 100 ms, until the deadline."""
    began = time.monotonic()
    reader, writer = await asyncio.open_connection(bind.host, bind.port, limit=1 << 14)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
    await writer.drain()
    got = 0
    try:
        while time.monotonic() < until:
            chunk = await reader.read(1 << 14)
            if not chunk:
                break
            got += len(chunk)
            await asyncio.sleep(0.1)
    finally:
        writer.close()
    record.took["slow reader"].append(time.monotonic() - began)
    record.statuses["slow reader"][f"{got >> 20}MB"] += 1


def server_sample(pid: int) -> tuple[float, int, int]:
    """CPU seconds, RSS in MB, open descriptors."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") >> 20
    return cpu, rss, len(os.listdir(f"/proc/{pid}/fd"))


async def upstream(bind: Bind) -> web.AppRunner:
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", image)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, bind.host, bind.port).start()
    return runner


async def drive(args: argparse.Namespace, data: Path, wheels: list[str]) -> None:
    binds = {name: Bind("127.0.0.1", free_port()) for name in SERVICES}
    image_host = Bind("127.0.0.2", free_port())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTHONHOSTED_")},
        **{f"PYTHONHOSTED_{name.upper()}__BIND": str(bind) for name, bind in binds.items()},
        "PYTHONHOSTED_CAMO__ALLOW_NETWORKS": '["127.0.0.0/8"]',
    }
    command = [sys.executable, "-m", "pythonhosted", "serve", "--data-dir", str(data)]
    image_server = await upstream(image_host)
    server = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    record = Record()
    samples: list[tuple[float, float, int, int]] = []
    try:
        for bind in binds.values():
            await asyncio.to_thread(wait_for_port, bind, 120)
        key = (data / "camo.key").read_bytes().strip()
        began = time.monotonic()
        until = began + args.seconds
        timeout = aiohttp.ClientTimeout(total=120)
        files, stats = binds["files"].url(), binds["stats_web"].url()
        projects = bench_module("linehaul").PROJECTS
        rng = random.Random(1)
        counter = iter(range(10**9))

        def session(limit: int = 0) -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                timeout=timeout, connector=aiohttp.TCPConnector(limit=limit), auto_decompress=False
            )

        async def sampler() -> None:
            while time.monotonic() < until + 30:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    cpu, rss, fds = server_sample(server.pid)
                    samples.append((time.monotonic() - began, cpu, rss, fds))
                await asyncio.sleep(1)

        async def downloader(client: aiohttp.ClientSession) -> None:
            await record.get(client, "download", files + rng.choice(wheels[1:]))

        async def index(client: aiohttp.ClientSession) -> None:
            if rng.random() < 0.1:
                await record.get(client, "index root", files + "/simple/")
            else:
                name = f"project-{rng.randrange(args.projects):07d}"
                await record.get(client, "index project", f"{files}/simple/{name}/")

        async def stats_web(client: aiohttp.ClientSession) -> None:
            project = rng.choice(projects[:200])
            route = rng.choice(
                [
                    f"/api/packages/{project}/recent",
                    f"/api/packages/{project}/overall",
                    f"/badge/{project}.svg",
                    f"/packages/{project}",
                    "/api/v1/top?period=week",
                ]
            )
            await record.get(client, "stats web", stats + route)

        async def camo(client: aiohttp.ClientSession) -> None:
            url = f"{image_host.url()}/{next(counter)}.png"
            await record.get(client, "camo", sign_url(url, key, base=binds["camo"].url()))

        async with session() as downloads, session() as others:
            tasks = [asyncio.create_task(sampler())]
            watcher = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--watch",
                str(args.seconds),
                *(f"{name}={bind.url()}" for name, bind in binds.items()),
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            tasks += [
                asyncio.create_task(repeat(until, lambda: downloader(downloads)))
                for _ in range(args.clients)
            ]
            tasks += [
                asyncio.create_task(slow_reader(binds["files"], wheels[0], until + 90, record))
                for _ in range(args.slow)
            ]
            tasks += [asyncio.create_task(repeat(until, lambda: index(others))) for _ in range(4)]
            tasks += [
                asyncio.create_task(repeat(until, lambda: stats_web(others))) for _ in range(8)
            ]
            tasks += [asyncio.create_task(repeat(until, lambda: camo(others))) for _ in range(8)]
            health, _ = await watcher.communicate()
            # the stop, while the load still runs (the loops end at their next request)
            stop_began = time.monotonic()
            os.killpg(server.pid, signal.SIGTERM)
            code = await asyncio.to_thread(server.wait, 120)
            stopped = time.monotonic() - stop_began
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        await image_server.cleanup()
    print(machine())
    print(f"{args.seconds:g} s of load; serve's stop (SIGTERM): exit {code} in {stopped:.1f} s")
    print(health.decode().rstrip())
    print("\n".join(record.lines() + record.slowest()))
    for at, cpu, rss_mb, descriptors in samples[::5]:
        print(f"    t={at:4.0f} s  CPU {cpu:6.1f} s  RSS {rss_mb:5d} MB  descriptors {descriptors}")
    if samples:
        rss = [s[2] for s in samples]
        fds = [s[3] for s in samples]
        print(
            f"  server CPU {samples[-1][1] - samples[0][1]:.1f} s over {samples[-1][0]:.0f} s; "
            f"RSS {rss[0]} -> peak {max(rss)} -> {rss[-1]} MB; "
            f"descriptors {fds[0]} -> peak {max(fds)} -> {fds[-1]}"
        )


def watch(seconds: float, services: list[str]) -> None:
    """``/_health`` of each ``name=URL`` every 50 ms, for ``seconds``, each on its own
    connection; in a process of its own, so that the probe's load (its own loop) does not
    delay the watch."""

    async def health(service: str, record: Record) -> None:
        name, url = service.split("=", 1)
        until = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as client:
            while time.monotonic() < until:
                await record.get(client, f"health {name}", f"{url}/_health")
                await asyncio.sleep(0.05)

    async def all_of_them() -> None:
        record = Record()
        await asyncio.gather(*(health(service, record) for service in services))
        print("\n".join(record.lines() + record.slowest()))

    asyncio.run(all_of_them())


def main() -> None:
    if sys.argv[1:2] == ["--watch"]:
        watch(float(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--projects", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--slow", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/probe-serve"))
    args = parser.parse_args()
    data = args.dir.absolute()
    data.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    wheels = asyncio.run(prepare(data, args.projects))
    log_object = drop_log_object(data, args.lines)
    print(f"data dir ready in {time.monotonic() - began:.0f} s")
    asyncio.run(drive(args, data, wheels))
    print(f"  the big log object {'still waits' if log_object.exists() else 'was ingested'}")


if __name__ == "__main__":
    main()
