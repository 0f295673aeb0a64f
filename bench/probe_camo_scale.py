"""Probe: camo and its cache at production shape (many entries, crashes, a full disk, hostile
upstreams, thousands of clients). Loopback only: camo on 127.0.0.1, the image host this script
starts on 127.0.0.2; every process started here is in its own process group, stopped by PID.

    .venv/bin/python bench/probe_camo_scale.py [--parts entries,bound,kill,herd,hostile,stale,slow]
                                               [--entries 100000] [--clients 5000]
    unshare -m .venv/bin/python bench/probe_camo_scale.py --parts fulldisk   # mounts a tmpfs

Parts (each bounded in count and time; the numbers it prints go to BENCHMARKS.md, camo):

- ``entries``: a disk tier of ``--entries`` entries (sha256 keys, 200-byte images): the
  index's start (CPU, wall, peak memory), files per directory, an insert that evicts when
  full (CPU each), and how soon ``camo serve`` answers on that directory.
- ``bound``: 1,000 distinct 64 KB images at once through a 2 MB cache: the disk's bytes
  (files' blocks, temporary files too) sampled all along, against the bound.
- ``kill``: SIGKILL camo amid 400 concurrent fills of 200 KB images, start it again:
  temporary files left, then after the start, bytes counted against bytes on disk, and every
  image asked again served whole.
- ``fulldisk``: the cache on a 1 MB tmpfs that is full (needs its own mount namespace): 2,000
  images served uncached, how many log lines say so.
- ``herd``: ``--clients`` clients ask one URL at once while its host takes 3 s to answer a
  1 MB image: upstream requests, camo's peak memory over idle, answers.
- ``hostile``: 2,000 concurrent misses of distinct URLs whose host trickles, stalls after
  the headers, sends past ``--max-size`` slowly, lies in Content-Length, or sends an image's
  first bytes then garbage: the answers, what got cached, temporary files left, memory.
- ``stale``: a stale entry whose revalidation hangs: how long until it is served stale.
- ``slow``: 2,000 idle sockets and 300 slow readers of a 4 MB cached image: camo's memory
  while they are there and after they go.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp

from pythonhosted.camo import sign_url
from pythonhosted.web.server import Bind, free_port, wait_for_port

KEY = b"probe-key"
HOST = "127.0.0.2"
PYTHON = sys.executable


def image(name: str, size: int) -> bytes:
    """A deterministic PNG-looking body for ``name``: its magic, then its hash repeated."""
    seed = hashlib.sha256(name.encode()).digest()
    return (b"\x89PNG\r\n\x1a\n" + seed * (size // 32 + 1))[:size]


# -- the image host: raw asyncio, so it can misbehave exactly as told --


class ImageHost:
    """Answers ``/KIND/NAME?size=..``; counts requests per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.port = 0
        self.hang_revalidations = False
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, 0, backlog=8192)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def url(self, kind: str, name: str, **query: object) -> str:
        tail = "&".join(f"{key}={value}" for key, value in query.items())
        return f"http://{HOST}:{self.port}/{kind}/{name}" + (f"?{tail}" if tail else "")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(120):
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    target = head.split(b" ", 2)[1].decode()
                    if not await self._answer(target, head, writer):
                        break
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _answer(self, target: str, head: bytes, writer: asyncio.StreamWriter) -> bool:
        """Send one answer; whether the connection may carry another."""
        parts = urlsplit(target)
        _, kind, name = parts.path.split("/", 2)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        size = int(query.get("size", "2000"))
        self.hits[parts.path] += 1
        body = image(name, size)
        cc = query.get("cc", "max-age=600")

        def start(length: int | None, extra: str = "") -> None:
            framing = f"content-length: {length}\r\n" if length is not None else ""
            writer.write(
                f"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncache-control: {cc}\r\n"
                f'etag: "{name}"\r\n{framing}{extra}\r\n'.encode()
            )

        if kind == "img":
            await asyncio.sleep(float(query.get("delay", "0")))
            start(size)
            writer.write(body)
        elif kind == "reval":
            if b"if-none-match" in head.lower() and self.hang_revalidations:
                await asyncio.sleep(60)  # camo gives up first
                return False
            start(size)
            writer.write(body)
        elif kind == "trickle":  # the whole image, 1 KB every 50 ms
            start(size)
            for offset in range(0, size, 1024):
                writer.write(body[offset : offset + 1024])
                await writer.drain()
                await asyncio.sleep(0.05)
        elif kind == "stall":  # headers, a little, then nothing
            start(size)
            writer.write(body[:1000])
            await writer.drain()
            await asyncio.sleep(60)
            return False
        elif kind == "oversize":  # no length; streams past --max-size slowly
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\nconnection: close\r\n\r\n")
            for _ in range(2000):
                writer.write(body)
                await writer.drain()
                await asyncio.sleep(0.005)
            return False
        elif kind == "short":  # says more than it sends, then closes
            start(size)
            writer.write(body[: size // 2])
            await writer.drain()
            return False
        elif kind == "long":  # says less than it sends: the rest is junk on the connection
            start(size // 2)
            writer.write(body)
            await writer.drain()
            return False
        elif kind == "garbage":  # an image's first bytes, then random bytes, as a PNG
            start(size)
            writer.write(body[:16] + os.urandom(size - 16))
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        return True


# -- camo, measured from outside --


def group_pids(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    found.append(int(entry))
    return found


def rss_mib(pgid: int) -> float:
    total = 0
    for pid in group_pids(pgid):
        with suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pgid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in group_pids(pgid):
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def on_disk(root: Path) -> tuple[int, int]:
    """(bytes the cache's files hold, temporary files among them)."""
    held = temps = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".lock"):
                continue
            with suppress(FileNotFoundError):
                held += os.stat(os.path.join(folder, name)).st_blocks * 512
                temps += name.startswith(".tmp-")
    return held, temps


class Camo:
    def __init__(self, tmp: Path, cache_dir: Path | None, *flags: str) -> None:
        self.bind = Bind("127.0.0.1", free_port())
        self.log = tmp / f"camo-{self.bind.port}.log"
        key_file = tmp / "key"
        key_file.write_bytes(KEY)
        self.command = [
            str(Path(PYTHON).parent / "pythonhosted"),
            "camo",
            "serve",
            f"--bind=127.0.0.1:{self.bind.port}",
            f"--key-file={key_file}",
            f"--allow-network={HOST}/32",
            *flags,
        ]
        if cache_dir is not None:
            self.command.append(f"--cache-dir={cache_dir}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] | None = None  # None: this process's environment

    def start(self, wait: float = 60) -> float:
        """Start it; seconds until it accepts connections."""
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command, stdout=log, stderr=log, start_new_session=True, env=self.env
            )
        wait_for_port(self.bind, wait)
        return time.monotonic() - started

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    @property
    def pgid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, target: str) -> str:
        return self.bind.url() + sign_url(target, KEY)

    def metric(self, name: str) -> float:
        import urllib.request

        with urllib.request.urlopen(self.bind.url() + "/metrics", timeout=10) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def logged(self, text: str) -> int:
        return sum(text in line for line in self.log.read_text(errors="replace").splitlines())


@contextmanager
def running(camo: Camo) -> Iterator[Camo]:
    try:
        camo.start()
        yield camo
    finally:
        camo.kill()


async def get_all(
    urls: list[str], *, limit: int = 0, timeout: float = 60, read_rate: int | None = None
) -> list[tuple[int, bytes]]:
    """GET every URL at once (``limit`` connections, 0: no limit); (status, body) each, status
    0 for a connection that broke off."""
    connector = aiohttp.TCPConnector(limit=limit, force_close=True)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def one(url: str) -> tuple[int, bytes]:
            try:
                async with session.get(url) as response:
                    if read_rate is None:
                        return response.status, await response.read()
                    body = b""
                    while chunk := await response.content.read(read_rate):
                        body += chunk
                        await asyncio.sleep(1)
                    return response.status, body
            except (aiohttp.ClientError, TimeoutError):
                return 0, b""

        return list(await asyncio.gather(*(one(url) for url in urls)))


# -- the parts --


def part_entries(tmp: Path, count: int) -> None:
    root = tmp / "entries"
    fill = f"""
import hashlib, time
from pathlib import Path
from pythonhosted.camo.cache.disk import DiskTier
from pythonhosted.camo.cache.entry import Entry
tier = DiskTier(Path({str(root)!r}), max_bytes={count} * 4096)
tier.open()
for number in range({count}):
    url = f"http://images.test/{{number}}"
    key = hashlib.sha256(url.encode()).hexdigest()
    writer = tier.writer(key)
    writer.write(b"\\x89PNG" + b"x" * 196)
    writer.commit(Entry(url, url, ((b"content-type", b"image/png"),), writer.length,
                        writer.crc, time.time(), 600.0, 0.0, True))
"""
    started = time.monotonic()
    subprocess.run([PYTHON, "-c", fill], check=True)
    print(f"entries: wrote {count} entries in {time.monotonic() - started:.0f} s")
    measure = f"""
import resource, time
from pathlib import Path
from pythonhosted.camo.cache.disk import DiskTier
from pythonhosted.camo.cache.entry import Entry
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tier = DiskTier(Path({str(root)!r}), max_bytes={count} * 4096)
cpu, wall = time.process_time(), time.monotonic()
tier.open()
cpu, wall = time.process_time() - cpu, time.monotonic() - wall
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(f"entries: index of {{len(tier)}} entries: {{cpu:.2f}} s CPU, {{wall:.2f}} s wall, "
      f"peak memory +{{peak:.0f}} MiB ({{peak * 1048576 / len(tier):.0f}} bytes an entry)")
cpu = time.process_time()
for number in range(5000):
    writer = tier.writer(f"{{number:064x}}"[::-1])
    writer.write(b"y" * 200)
    writer.commit(Entry("u", "u", (), writer.length, writer.crc, time.time(), 1.0, 0.0, True))
each = (time.process_time() - cpu) / 5000 * 1e6
print(f"entries: insert into the full tier: {{each:.0f}} us CPU each, {{tier.evictions}} evictions "
      f"for 5000 inserts; bytes {{tier.bytes}}, bound {{tier.max_bytes}}")
"""
    subprocess.run([PYTHON, "-c", measure], check=True)
    slot = root / "slot-0"
    widest = max(len(os.listdir(sub)) for sub in slot.iterdir())
    print(f"entries: layout {len(os.listdir(slot))} directories, at most {widest} files in one")
    camo = Camo(tmp, root, f"--cache-max-bytes={count * 4096}")
    with running(camo):
        import urllib.request

        started = time.monotonic()
        with urllib.request.urlopen(camo.bind.url() + "/healthcheck", timeout=120) as answer:
            assert answer.status == 200
        print(
            f"entries: camo serve on {count} entries: first answer "
            f"{time.monotonic() - started:.1f} s after it listened"
        )
        series = 'camo_cache_entries{tier="disk"}'
        deadline = time.monotonic() + 120
        while camo.metric(series) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        print(
            f"entries: index read {time.monotonic() - started:.1f} s after the first answer "
            f"({camo.metric(series):.0f} entries), RSS {rss_mib(camo.pgid):.0f} MiB"
        )


def part_bound(tmp: Path, host: ImageHost, loop: asyncio.AbstractEventLoop) -> None:
    root = tmp / "bound"
    bound = 2_000_000
    camo = Camo(tmp, root, f"--cache-max-bytes={bound}", "--timeout=30s")
    peak = [0, 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            held, temps = on_disk(root)
            peak[0], peak[1] = max(peak[0], held), max(peak[1], temps)
            time.sleep(0.05)

    with running(camo):
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            urls = [camo.url(host.url("trickle", f"b{n}", size=64 * 1024)) for n in range(1000)]
            answers = asyncio.run_coroutine_threadsafe(get_all(urls, timeout=120), loop).result()
        finally:
            stop.set()
            sampler.join()
        counted = camo.metric('camo_cache_bytes{tier="disk"}')
        held, temps = on_disk(root)
    print(
        f"bound: {Counter(status for status, _ in answers)}; disk peak {peak[0]:,} bytes "
        f"(bound {bound:,}), {peak[1]} temporary files at most; after: counted "
        f"{counted:,.0f}, held {held:,}, {temps} temporary"
    )


def part_kill(tmp: Path, host: ImageHost, loop: asyncio.AbstractEventLoop) -> None:
    root = tmp / "kill"
    camo = Camo(tmp, root, "--cache-max-bytes=50000000", "--timeout=30s")
    done = [(f"k{n}", host.url("img", f"k{n}", size=200_000)) for n in range(200)]
    trickling = [(f"t{n}", host.url("trickle", f"t{n}", size=200_000)) for n in range(200)]
    camo.start()
    try:
        asyncio.run_coroutine_threadsafe(
            get_all([camo.url(url) for _, url in done], limit=50), loop
        ).result()
        pending = asyncio.run_coroutine_threadsafe(
            get_all([camo.url(url) for _, url in trickling], timeout=60), loop
        )
        deadline = time.monotonic() + 60
        while on_disk(root)[1] < 150 and time.monotonic() < deadline:
            time.sleep(0.1)
        held, temps = on_disk(root)
        camo.kill(signal.SIGKILL)
        pending.result()
    finally:
        camo.kill()
    print(f"kill: SIGKILL amid fills: {temps} temporary files, {held:,} bytes on disk")
    with running(camo):
        counted = camo.metric('camo_cache_bytes{tier="disk"}')  # answered once indexed
        held, temps = on_disk(root)
        names = [name for name, _ in done + trickling]
        answers = asyncio.run_coroutine_threadsafe(
            get_all([camo.url(url) for _, url in done + trickling], limit=100), loop
        ).result()
        whole = sum(
            status == 200 and body == image(name, 200_000)
            for name, (status, body) in zip(names, answers, strict=True)
        )
        hits = camo.metric('camo_cache_responses_total{result="hit"}')
        print(
            f"kill: after the start {temps} temporary files, counted {counted:,.0f} bytes, "
            f"held {held:,}; asked again: {whole}/{len(names)} whole, {hits:.0f} hits, "
            f"{Counter(status for status, _ in answers)}"
        )


def part_fulldisk(tmp: Path, host: ImageHost, loop: asyncio.AbstractEventLoop) -> None:
    full = tmp / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(full)], check=True)
    try:
        camo = Camo(tmp, full / "cache", "--cache-max-bytes=100000000")
        with running(camo):
            with (full / "filler").open("wb", buffering=0) as out, suppress(OSError):
                while True:
                    out.write(b"\0" * 4096)
            urls = [camo.url(host.url("img", f"f{n}", size=20_000)) for n in range(2000)]
            answers = asyncio.run_coroutine_threadsafe(get_all(urls, limit=200), loop).result()
            whole = sum(
                status == 200 and body == image(f"f{n}", 20_000)
                for n, (status, body) in enumerate(answers)
            )
            failures = camo.metric("camo_cache_write_failures_total")
        print(
            f"fulldisk: {whole}/2000 served whole, {failures:.0f} write failures counted, "
            f"{camo.logged('not storing')} 'not storing' lines, "
            f"{camo.logged('more disk failures')} summary lines, "
            f"{camo.logged('Traceback')} tracebacks"
        )
    finally:
        subprocess.run(["umount", str(full)], check=False)


def part_herd(tmp: Path, host: ImageHost, loop: asyncio.AbstractEventLoop, clients: int) -> None:
    camo = Camo(tmp, tmp / "herd", "--timeout=20s")
    with running(camo):
        idle = rss_mib(camo.pgid)
        cpu = cpu_seconds(camo.pgid)
        target = host.url("img", "herd", size=1_000_000, delay=3)
        pending = asyncio.run_coroutine_threadsafe(
            get_all([camo.url(target)] * clients, timeout=120), loop
        )
        peak = idle
        while not pending.done():
            peak = max(peak, rss_mib(camo.pgid))
            time.sleep(0.2)
        answers = pending.result()
        whole = sum(status == 200 and body == image("herd", 1_000_000) for status, body in answers)
        used = cpu_seconds(camo.pgid) - cpu
        after = rss_mib(camo.pgid)
    path = urlsplit(target).path
    print(
        f"herd: {clients} clients, one URL: {whole} whole, "
        f"{Counter(status for status, _ in answers)}, {host.hits[path]} upstream request(s); "
        f"RSS idle {idle:.0f} MiB, peak {peak:.0f} (+{(peak - idle) * 1024 / clients:.0f} KiB "
        f"a client), after {after:.0f}; camo CPU {used:.1f} s"
    )


def part_hostile(tmp: Path, host: ImageHost, loop: asyncio.AbstractEventLoop) -> None:
    root = tmp / "hostile"
    camo = Camo(tmp, root, "--timeout=4s", "--max-size=100")
    kinds = {
        "trickle": 20_000,
        "stall": 50_000,
        "oversize": 1024,
        "short": 20_000,
        "long": 20_000,
        "garbage": 20_000,
    }
    with running(camo):
        idle = rss_mib(camo.pgid)
        urls = [
            (kind, camo.url(host.url(kind, f"h{kind}{n}", size=size)))
            for n in range(2000 // len(kinds))
            for kind, size in kinds.items()
        ]
        started = time.monotonic()
        pending = asyncio.run_coroutine_threadsafe(
            get_all([url for _, url in urls], timeout=60), loop
        )
        peak = idle
        while not pending.done():
            peak = max(peak, rss_mib(camo.pgid))
            time.sleep(0.2)
        answers = pending.result()
        took = time.monotonic() - started
        by_kind: dict[str, Counter[int]] = {}
        for (kind, _), (status, _) in zip(urls, answers, strict=True):
            by_kind.setdefault(kind, Counter())[status] += 1
        stores = camo.metric("camo_cache_stores_total")
        time.sleep(3)
        temps = on_disk(root)[1]
        after = rss_mib(camo.pgid)
    print(
        f"hostile: {len(urls)} misses in {took:.1f} s: "
        + "; ".join(f"{kind} {dict(counts)}" for kind, counts in by_kind.items())
    )
    print(
        f"hostile: stored {stores:.0f} (trickle and garbage may be), {temps} temporary files "
        f"left, RSS idle {idle:.0f} MiB, peak {peak:.0f}, 3 s after {after:.0f}"
    )


def part_stale(tmp: Path, host: ImageHost, loop: asyncio.AbstractEventLoop) -> None:
    camo = Camo(tmp, tmp / "stale", "--timeout=3s", "--cache-stale-if-error=60s")
    target = host.url("reval", "stale", size=20_000, cc="max-age=1")
    with running(camo):
        asyncio.run_coroutine_threadsafe(get_all([camo.url(target)]), loop).result()
        time.sleep(1.5)
        host.hang_revalidations = True
        started = time.monotonic()
        answers = asyncio.run_coroutine_threadsafe(
            get_all([camo.url(target)] * 200, timeout=30), loop
        ).result()
        took = time.monotonic() - started
        host.hang_revalidations = False
        stale = camo.metric('camo_cache_responses_total{result="stale"}')
    whole = sum(status == 200 and body == image("stale", 20_000) for status, body in answers)
    print(
        f"stale: 200 requests while revalidation hangs (--timeout 3s): {whole} whole in "
        f"{took:.1f} s; served stale (counted) {stale:.0f}"
    )


def part_slow(tmp: Path, host: ImageHost, loop: asyncio.AbstractEventLoop) -> None:
    camo = Camo(tmp, tmp / "slow", "--timeout=30s")
    size = 4_000_000
    target = host.url("img", "big", size=size)
    with running(camo):
        asyncio.run_coroutine_threadsafe(get_all([camo.url(target)]), loop).result()
        idle = rss_mib(camo.pgid)

        async def scenario() -> tuple[float, float, int]:
            sockets = []
            for _ in range(2000):
                _, writer = await asyncio.open_connection(camo.bind.host, camo.bind.port)
                sockets.append(writer)
            with_idle = rss_mib(camo.pgid)
            readers = asyncio.ensure_future(
                get_all([camo.url(target)] * 300, timeout=25, read_rate=65536)
            )
            peak = with_idle
            for _ in range(40):
                await asyncio.sleep(0.5)
                peak = max(peak, rss_mib(camo.pgid))
            readers.cancel()
            with suppress(asyncio.CancelledError):
                await readers
            for writer in sockets:
                writer.close()
            return with_idle, peak, len(sockets)

        with_idle, peak, count = asyncio.run_coroutine_threadsafe(scenario(), loop).result()
        time.sleep(3)
        after = rss_mib(camo.pgid)
    print(
        f"slow: RSS idle {idle:.0f} MiB; {count} idle sockets {with_idle:.0f} "
        f"(+{(with_idle - idle) * 1024 / count:.0f} KiB each); plus 300 slow readers of a 4 MB "
        f"hit: peak {peak:.0f} (+{(peak - with_idle) * 1024 / 300:.0f} KiB each); "
        f"3 s after they left {after:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="entries,bound,kill,herd,hostile,stale,slow")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=5000)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with open("/proc/cpuinfo") as cpuinfo:
        model = next(line for line in cpuinfo if line.startswith("model name"))
    print(f"{model.split(':', 1)[1].strip()}; load {os.getloadavg()[0]:.1f}")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host = ImageHost()
    asyncio.run_coroutine_threadsafe(host.start(), loop).result()
    with tempfile.TemporaryDirectory(prefix="probe-camo-scale-") as name:
        tmp = Path(name)
        for part in args.parts.split(","):
            started = time.monotonic()
            if part == "entries":
                part_entries(tmp, args.entries)
            elif part == "herd":
                part_herd(tmp, host, loop, args.clients)
            else:
                globals()[f"part_{part}"](tmp, host, loop)
            print(f"{part}: {time.monotonic() - started:.0f} s; load {os.getloadavg()[0]:.1f}")
    asyncio.run_coroutine_threadsafe(host.stop(), loop).result()
    loop.call_soon_threadsafe(loop.stop)


if __name__ == "__main__":
    main()
