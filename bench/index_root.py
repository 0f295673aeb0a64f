"""Benchmark: the index's root page over a catalog of a million projects.

    .venv/bin/python bench/index_root.py [--projects 1000000] [--dir /tmp/index-root-bench]
                                         [--ttl 10] [--reference OTHER/src]

Makes (once, kept in ``--dir``) a ``file://`` catalog of ``--projects`` projects of one
record each, starts ``pythonhosted index serve`` on it and measures, while ``/_health`` is
asked every 20 ms on another connection: the first ``/simple/`` answer (HTML; wall time,
the server's CPU with its children's, its RSS and peak RSS after), a second one, the JSON
root, the gzipped root, a conditional request with the page's ETag (304), and the HTML again
once ``index.cache_ttl`` (``--ttl``) has passed; ``/_health``'s p99 and slowest answer during each
(work that holds the event loop shows there). Then the server is stopped (the time its stop
took is printed) and started again: its first ``/simple/`` is measured once more (with the
catalog's names snapshot the first server wrote, this checkout reads it instead of walking the
catalog). The catalog's snapshots are removed before the first server starts (the first
ever). With ``--reference`` (another checkout's ``src/``) its servers answer the same requests
after. The machine is shared: the CPU model and load average are printed.

``--stop-during-walk``: instead, a server with no snapshot to read is asked for ``/simple/``
and stopped (SIGTERM, to the server alone, as an orchestrator that signals its main process
does) ``--stop-after`` seconds later, while it walks the catalog: the time its stop took and
the request's answer are printed (``index serve``'s default ``http.drain_timeout``, 20 s).

``--quiet-for SECONDS``: instead, a server is started and asked nothing for that long (longer
than the ~8.5 minutes a snapshot is usable), then stopped, and the first ``/simple/`` of the
next server measured (this checkout's keeper kept the snapshot young: no walk).

``--dir`` may hold a symbolic link ``catalog`` to another's catalog (read only): what is
written (snapshots, markers) goes beside it, in ``--dir``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from pythonhosted.catalog import FileRecord
from pythonhosted.web.server import Bind, free_port, wait_for_port


def build(root: Path, count: int) -> None:
    catalog = root / "catalog"
    done = root / f"built-{count}"
    if done.exists():
        return
    for n in range(count):
        name = f"project-{n:07d}"
        filename = f"project_{n:07d}-1.0.tar.gz"
        record = FileRecord(
            filename=filename,
            path=f"/packages/00/00/{n:060x}/{filename}",
            project=name,
            version="1.0",
            package_type="sdist",
            python_version="source",
            size=1000,
            sha256="0" * 64,
            blake2b_256=f"{n:064x}",
            upload_time="2026-01-01T00:00:00.000000Z",
        )
        directory = catalog / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{filename}.json").write_bytes(record.to_json())
    done.touch()


def cpu_and_memory(pid: int) -> tuple[float, int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # user + system, its own and its waited-for children's (this checkout's catalog walk)
    cpu = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return cpu, int(status["VmRSS"].split()[0]) // 1024, int(status["VmHWM"].split()[0]) // 1024


async def measure(base: str, pid: int, label: str, headers: dict[str, str]) -> str | None:
    latencies: list[float] = []
    done = asyncio.Event()

    async def health(session: aiohttp.ClientSession) -> None:
        while not done.is_set():
            began = time.monotonic()
            async with session.get(base + "/_health") as response:
                await response.read()
            latencies.append(time.monotonic() - began)
            await asyncio.sleep(0.02)

    timeout = aiohttp.ClientTimeout(total=600)
    async with (
        aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as watcher,
        aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as client,
    ):
        watching = asyncio.create_task(health(watcher))
        cpu_before = cpu_and_memory(pid)[0]
        began = time.monotonic()
        async with client.get(base + "/simple/", headers=headers) as response:
            body = await response.read()
            status, etag = response.status, response.headers.get("etag")
        wall = time.monotonic() - began
        done.set()
        await watching
    cpu, rss, peak = cpu_and_memory(pid)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    slowest = latencies[-1] if latencies else 0.0
    print(
        f"{label:<24} {status} {len(body) / 1e6:7.1f} MB  wall {wall:6.2f} s  "
        f"server CPU {cpu - cpu_before:6.2f} s  RSS {rss} MB (peak {peak})  "
        f"/_health p99 {p99 * 1000:6.1f} ms, slowest {slowest * 1000:7.1f} ms "
        f"({len(latencies)} asked)"
    )
    return etag


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--projects", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/index-root-bench"))
    parser.add_argument("--ttl", type=float, default=10.0)
    parser.add_argument("--reference", type=Path)
    parser.add_argument("--stop-during-walk", action="store_true")
    parser.add_argument("--stop-after", type=float, default=3.0)
    parser.add_argument("--quiet-for", type=float)
    args = parser.parse_args()
    began = time.monotonic()
    build(args.dir, args.projects)
    print(f"catalog of {args.projects:,} projects ready in {time.monotonic() - began:.0f} s")
    cpu = Path("/proc/cpuinfo").read_text().split("model name", 1)[1].split("\n", 1)[0]
    print(cpu.strip(": \t"))
    print("load average", os.getloadavg())
    for source in [None, args.reference] if args.reference else [None]:
        print("server:", source or "this checkout")
        if args.stop_during_walk:
            await stop_during_walk(args.dir, args.ttl, source, args.stop_after)
        elif args.quiet_for is not None:
            await quiet_then_restart(args.dir, args.ttl, source, args.quiet_for)
        else:
            await serve_and_measure(args.dir, args.ttl, source)
    print("load average", os.getloadavg())


async def serve_and_measure(root: Path, ttl: float, source: Path | None) -> None:
    shutil.rmtree(root / "catalog-names", ignore_errors=True)  # the first ever
    with serving(root, ttl, source) as (base, pid):
        html = {"Accept": "text/html", "Accept-Encoding": "identity"}
        etag = await measure(base, pid, "first HTML", html)
        await measure(base, pid, "second HTML", html)
        json_type = {"Accept": "application/vnd.pypi.simple.v1+json"}
        await measure(base, pid, "first JSON", json_type)
        await measure(base, pid, "HTML gzipped", {**html, "Accept-Encoding": "gzip"})
        await measure(base, pid, "If-None-Match (304)", {**html, "If-None-Match": etag or ""})
        await asyncio.sleep(ttl + 1)
        await measure(base, pid, f"HTML after the ttl ({ttl:g} s)", html)
    with serving(root, ttl, source) as (base, pid):
        await measure(base, pid, "first HTML, restarted", html)


async def stop_during_walk(root: Path, ttl: float, source: Path | None, after: float) -> None:
    shutil.rmtree(root / "catalog-names", ignore_errors=True)  # nothing to read: a walk
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        with serving(root, ttl, source, group=False) as (base, _):

            async def ask() -> str:
                try:
                    async with client.get(base + "/simple/") as response:
                        return f"{response.status} {(await response.text())[:40]!r}"
                except aiohttp.ClientError as exc:
                    return f"no answer ({exc!r})"

            asking = asyncio.create_task(ask())
            await asyncio.sleep(after)
            if asking.done():
                print("the walk ended before the stop: try a smaller --stop-after")
        print("the root request:", await asking)


async def quiet_then_restart(root: Path, ttl: float, source: Path | None, quiet: float) -> None:
    html = {"Accept": "text/html", "Accept-Encoding": "identity"}
    with serving(root, ttl, source) as (base, pid):
        await measure(base, pid, "first HTML", html)  # (a snapshot, as after any first walk)
        print(f"quiet for {quiet:g} s, load average {os.getloadavg()}")
        await asyncio.sleep(quiet)
    with serving(root, ttl, source) as (base, pid):
        await measure(base, pid, "first HTML, restarted", html)


@contextlib.contextmanager
def serving(
    root: Path, ttl: float, source: Path | None, group: bool = True
) -> Iterator[tuple[str, int]]:
    """``index serve`` on the catalog in ``root``: its base URL and PID; stopped (SIGTERM, to
    its process group or, not ``group``, to it alone) after, printing how long the stop took."""
    bind = Bind("127.0.0.1", free_port())
    command = [sys.executable, "-m", "pythonhosted", "index", "serve"]
    command += ["--primary", f"file://{root}", "--bind", f"{bind.host}:{bind.port}"]
    env = {
        **os.environ,
        "PYTHONHOSTED_DATA_DIR": str(root / "data"),
        "PYTHONHOSTED_INDEX__CACHE_TTL": str(ttl),
    }
    if source is not None:
        env["PYTHONPATH"] = str(source)
    server = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        wait_for_port(bind, timeout=60)
        yield bind.url(), server.pid
    finally:
        began = time.monotonic()
        if group:
            os.killpg(server.pid, 15)
        else:
            os.kill(server.pid, 15)
        server.wait(60)
        print(f"stopped in {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
