"""Docs hosting at production size: uploads, requests, readers during uploads, kills.

    .venv/bin/python bench/docs_sites.py [--src DIR] [--files 99999] [--file-bytes 10240]
        [--duration 8] [--readers 5000] [--idle 3000] [--kills 10]

Runs ``pythonhosted`` from ``--src`` (default: this tree's ``src``; give a copy of another
branch's, e.g. ``git archive main src | tar -x -C /tmp/main``, to compare) against a local
docs store in a temporary directory:

1. ``docs upload`` of a site of ``--files`` files twice (the second replaces the first): CPU
   (user + sys) per file and peak RSS of the command.
2. ``conveyor serve`` (one worker) under wrk for one page: server CPU per request; its RSS.
3. ``--readers`` clients at once reading pages while a third upload replaces the site: every
   answer must be 200 and one version's page, whole.
4. ``--idle`` idle connections held open, then one request: answered?
5. ``--kills`` uploads killed with SIGKILL at random moments, pages read after each: the
   site served must stay one version, whole; then one upload with the grace periods at 0, and
   what is left in the store.

Everything listens on 127.0.0.1, loads are bounded by count and time, and every process
started here is stopped by its PID (its process group) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import group_cpu_seconds, machine, wrk
from pythonhosted.web.server import Bind, free_port, wait_for_port

HERE = Path(__file__).resolve().parent.parent


def write_site(root: Path, version: str, files: int, size: int) -> Path:
    """``files`` pages of ``size`` bytes, 1,000 a folder, each starting with ``version``."""
    for number in range(files):
        path = root / f"p{number // 1000}" / f"f{number}.html"
        if number % 1000 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{version} {number} ".encode().ljust(size, b"."))
    (root / "index.html").write_bytes(f"{version} front".encode())
    return root


def environment(src: Path, data: Path, **settings: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHOSTED_DATA_DIR": str(data)}
    env.update(
        {f"PYTHONHOSTED_CONVEYOR__{name.upper()}": value for name, value in settings.items()}
    )
    return env


def upload(src: Path, store: str, site: Path, data: Path, **settings: str) -> tuple[float, int]:
    """Run ``docs upload``; its CPU seconds and peak RSS (bytes)."""
    command = [sys.executable, "-m", "pythonhosted", "docs", "upload", "--store", store]
    process = subprocess.Popen(
        [*command, "proj", str(site)],
        env=environment(src, data, **settings),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"docs upload exited {process.returncode}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def rss_of_group(pgid: int) -> int:
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                continue
    return total


async def read_pages(
    base: str, paths: list[str], clients: int, until: asyncio.Future[Any]
) -> Counter[str]:
    """``clients`` connections reading ``paths`` at random until ``until`` is done (and one
    more round each); what they saw: status and version of each answer."""
    seen: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            last = False
            while not last:
                last = until.done()
                path = random.choice(paths)
                try:
                    async with session.get(base + path) as response:
                        body = await response.read()
                except aiohttp.ClientError as exc:
                    seen[f"error {type(exc).__name__}"] += 1
                    continue
                number = path.rsplit("/f", 1)[-1].removesuffix(".html")
                words = body.split(b" ", 2)
                whole = len(words) > 1 and words[1].decode() in (number, "front")
                when = "after" if until.done() else "during"
                seen[f"{when}: {response.status} {words[0].decode() if whole else 'MIXED'}"] += 1

        await asyncio.gather(*(client() for _ in range(clients)))
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=HERE / "src")
    parser.add_argument("--files", type=int, default=99_999)  # + index.html: upload_max_files
    parser.add_argument("--file-bytes", type=int, default=10 * 1024)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--readers", type=int, default=5000)
    parser.add_argument("--idle", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-docs-sites-"))
    try:
        run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path) -> None:
    data, store = root / "data", f"file://{root}/docs"
    sites = {
        version: write_site(root / version, version, args.files, args.file_bytes)
        for version in ("one", "two", "three")
    }
    print(f"machine: {machine()}; src {args.src}")
    print(f"site: {args.files} files of {args.file_bytes} bytes")
    for version in ("one", "two"):
        cpu, peak = upload(args.src, store, sites[version], data)
        print(
            f"upload {version}: {cpu:.1f} s CPU, {cpu / args.files * 1e6:.0f} us/file, "
            f"peak RSS {peak / 2**20:.0f} MiB"
        )

    bind = Bind("127.0.0.1", free_port())
    server = subprocess.Popen(
        [sys.executable, "-m", "pythonhosted", "conveyor", "serve", "--docs", store,
         "--bind", f"{bind.host}:{bind.port}", "--workers", "1"],
        env=environment(args.src, data), stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    base = bind.url()
    try:
        wait_for_port(bind)
        load = wrk(base + "/proj/p1/f1500.html", server.pid, 64, args.duration)
        print(
            f"serve one page (wrk -c64, {args.duration} s): {load.rps:.0f} req/s, "
            f"{load.cpu_us:.0f} us CPU/request, p99 {load.p99_ms:.1f} ms; "
            f"server RSS {rss_of_group(server.pid) / 2**20:.0f} MiB"
        )

        paths = [f"/proj/p{n // 1000}/f{n}.html" for n in range(0, args.files, 7)] + ["/proj/"]

        async def readers_during_upload() -> Counter[str]:
            loop = asyncio.get_running_loop()
            uploading = loop.run_in_executor(None, upload, args.src, store, sites["three"], data)
            return await read_pages(base, paths, args.readers, uploading)

        before = group_cpu_seconds(server.pid)
        seen = asyncio.run(readers_during_upload())
        served = sum(seen.values())
        cpu = group_cpu_seconds(server.pid) - before
        print(
            f"{args.readers} readers during upload three: {dict(seen)}; server "
            f"{cpu / max(served, 1) * 1e6:.0f} us CPU/request, "
            f"RSS {rss_of_group(server.pid) / 2**20:.0f} MiB"
        )

        idle = []
        try:
            for _ in range(args.idle):
                idle.append(socket.create_connection((bind.host, bind.port)))
            started = time.monotonic()
            answer = asyncio.run(one_get(base + "/proj/"))
            print(
                f"{len(idle)} idle connections held: /proj/ answered {answer} in "
                f"{time.monotonic() - started:.2f} s"
            )
        finally:
            for held in idle:
                held.close()

        kill_loop(args, store, sites, data, base, paths, root)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


async def one_get(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await response.read()
        return response.status


def kill_loop(
    args: argparse.Namespace,
    store: str,
    sites: dict[str, Path],
    data: Path,
    base: str,
    paths: list[str],
    root: Path,
) -> None:
    versions: Counter[str] = Counter()
    for kill in range(args.kills):
        site = sites["one" if kill % 2 else "two"]
        command = [sys.executable, "-m", "pythonhosted", "docs", "upload", "--store", store]
        process = subprocess.Popen(
            [*command, "proj", str(site)],
            env=environment(args.src, data),
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(random.uniform(0.5, 8.0))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        sample = random.sample(paths, 200)

        async def look(sample: list[str]) -> Counter[str]:
            done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return await read_pages(base, sample, 50, done)

        seen: Counter[str] = Counter()
        for _ in range(4):
            seen += asyncio.run(look(sample))
        versions[" / ".join(sorted(seen))] += 1
    print(f"{args.kills} uploads killed at random: what readers saw after each: {dict(versions)}")
    files = sum(len(names) for _, _, names in os.walk(root / "docs"))
    try:
        upload(
            args.src, store, sites["three"], data, docs_keep_replaced="0", docs_keep_unfinished="0"
        )
    except RuntimeError as exc:  # a tree without those settings
        print(f"upload at grace 0: {exc}")
        upload(args.src, store, sites["three"], data)
    left = sum(len(names) for _, _, names in os.walk(root / "docs"))
    print(f"files in the store after the kills: {files}; after one upload at grace 0: {left}")


if __name__ == "__main__":
    main()
