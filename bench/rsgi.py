"""Would serving over granian's RSGI interface instead of ASGI pay? Both in the same run.

    .venv/bin/python bench/rsgi.py [--duration 5] [--rounds 3] [--connections 64]
                                   [--readers 20] [--skip-edge]

Issues 16 and 17 asked whether RSGI cuts CPU per request by 20 % or more on the hot paths;
this measures what decided it (BENCHMARKS.md, "RSGI"). Every server runs granian with the
options ours run with (``pythonhosted.web.server``), one process, on 127.0.0.1; each is started
here in its own process group and stopped by its PID.

1. The ceiling, bare apps answering a 10 KB body with the files edge's 20 response headers:
   ASGI; RSGI ``response_bytes`` with the headers prebuilt as ``str`` (the best any RSGI
   design can do); RSGI ``response_stream`` + ``send_bytes``; RSGI converting the request's
   headers to bytes and the response's to ``str`` per request (what an adapter under
   services that speak bytes headers pays). CPU per request, ratio to ASGI.
2. The files edge itself (needs nginx): ``files serve`` (ASGI) against the same edge served
   over RSGI through the bridge below (ASGI messages turned into RSGI calls, response
   headers converted once per header list), nginx as the reference: the 10 KB file and a
   suffix range, CPU per request.
3. Memory: ``--readers`` clients that send a GET for a 64 MB body streamed in 256 KB pieces
   and read nothing. ASGI's ``send`` waits while granian's queue for the connection is full;
   RSGI's stream transport queues without bound (granian: an unbounded channel, and
   ``send_bytes`` returns a finished awaitable), so the whole body piles up per reader.
4. Per byte (needs nginx): a 5 MB body as ASGI and RSGI streams of 256 KB pieces from memory
   (a cached body's route), as RSGI ``response_file_range`` (granian reads the file itself),
   and from nginx (sendfile): CPU per MB.
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
from typing import Any, ClassVar

import uvloop
from granian.constants import Interfaces

from files import memory_mb
from loadgen import Load, machine, nginx_conf, wrk
from pythonhosted.files.upload import upload
from pythonhosted.samples import wheel_of_size
from pythonhosted.storage import open_store
from pythonhosted.web.listener import claim
from pythonhosted.web.server import (
    Bind,
    ServerLimits,
    _EmbeddedServer,
    _options,
    free_port,
    wait_for_port,
)
from pythonhosted.web.types import ASGIApp, Message, Receive, Scope, Send

BODY = os.urandom(10 * 1024)
PIECE = os.urandom(256 * 1024)
BIG = 64 * 2**20
FIVE_MB = 5 * 2**20
FILE_ENV = "BENCH_RSGI_FILE"  # the 5 MB file the bare servers and nginx serve (part 4)
HEADERS = [
    (f"x-bench-header-{i}".encode(), f"a header value as long as the edge's, {i:02}".encode())
    for i in range(19)
] + [(b"content-length", str(len(BODY)).encode())]
BIG_HEADERS = [(b"content-length", str(BIG).encode())]
FIVE_MB_HEADERS = [(b"content-length", str(FIVE_MB).encode())]
STR_HEADERS = [(k.decode(), v.decode()) for k, v in HEADERS]
STR_BIG_HEADERS = [(k.decode(), v.decode()) for k, v in BIG_HEADERS]
STR_FIVE_MB_HEADERS = [(k.decode(), v.decode()) for k, v in FIVE_MB_HEADERS]
BARE = ("asgi", "rsgi-bytes", "rsgi-stream", "rsgi-converted")


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])  # what the service shell does
    headers.get(b"range")
    if scope["path"] in ("/big", "/5mb"):
        size, head = (BIG, BIG_HEADERS) if scope["path"] == "/big" else (FIVE_MB, FIVE_MB_HEADERS)
        await send({"type": "http.response.start", "status": 200, "headers": head})
        for _ in range(size // len(PIECE)):
            await send({"type": "http.response.body", "body": PIECE, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


class RSGIBare:
    """The bare RSGI answers; ``kind`` says which."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.path == "/5mb" and self.kind == "rsgi-bytes":
            # granian reads the file itself, in 128 KB pieces (the local-file route)
            protocol.response_file_range(200, STR_FIVE_MB_HEADERS, os.environ[FILE_ENV], 0, FIVE_MB)
            return
        if scope.path in ("/big", "/5mb"):
            size, head = (
                (BIG, STR_BIG_HEADERS) if scope.path == "/big" else (FIVE_MB, STR_FIVE_MB_HEADERS)
            )
            transport = protocol.response_stream(200, head)
            for _ in range(size // len(PIECE)):
                await transport.send_bytes(PIECE)
            return
        if self.kind == "rsgi-converted":
            headers = {k.encode("latin-1"): v.encode("latin-1") for k, v in scope.headers.items()}
            headers.get(b"range")
            out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in HEADERS]
            protocol.response_bytes(200, out, BODY)
            return
        scope.headers.get("range")
        if self.kind == "rsgi-stream":
            await protocol.response_stream(200, STR_HEADERS).send_bytes(BODY)
        else:
            protocol.response_bytes(200, STR_HEADERS, BODY)


class _BridgeSend:
    """ASGI ``send`` on an RSGI protocol: the head waits for the first body message, a single
    body goes out with ``response_bytes``, several through ``response_stream``."""

    converted: ClassVar[dict[int, tuple[Any, list[tuple[str, str]]]]] = {}

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.status = 500
        self.headers: list[tuple[str, str]] = []
        self.transport: Any = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = self._str_headers(message["headers"])
            return
        body = message.get("body", b"")
        if self.transport is None:
            if not message.get("more_body", False):
                self.protocol.response_bytes(self.status, self.headers, body)
                return
            self.transport = self.protocol.response_stream(self.status, self.headers)
        if body:
            await self.transport.send_bytes(body)

    def _str_headers(self, raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        """Converted once per header list object (the edge builds a 200's once per file)."""
        known = self.converted.get(id(raw))
        if known is not None and known[0] is raw:
            return known[1]
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
        if len(self.converted) > 64:  # per-request lists (a 206's) must not pile up
            self.converted.clear()
        self.converted[id(raw)] = (raw, headers)
        return headers


class _BridgeReceive:
    """ASGI ``receive`` on an RSGI protocol: the body's chunks, then a disconnect."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.chunks: Any = None
        self.finished = False

    async def __call__(self) -> Message:
        if not self.finished:
            if self.chunks is None:
                self.chunks = self.protocol.__aiter__()
            try:
                chunk = await self.chunks.__anext__()
            except StopAsyncIteration:
                chunk = b""
            if chunk:
                return {"type": "http.request", "body": chunk, "more_body": True}
            self.finished = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.protocol.client_disconnect()
        return {"type": "http.disconnect"}


class Bridge:
    """An ASGI app served over RSGI: measurement only (no raw_path, which RSGI does not give)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        host, _, port = scope.client.rpartition(":")
        asgi_scope = {
            "type": "http",
            "method": scope.method,
            "path": scope.path,
            "query_string": scope.query_string.encode("latin-1"),
            "headers": [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()
            ],
            "client": (host, int(port)),
            "scheme": scope.scheme,
            "http_version": scope.http_version,
        }
        await self.app(asgi_scope, _BridgeReceive(protocol), _BridgeSend(protocol))

    async def start(self) -> None:
        """The app's lifespan startup (RSGI has none of its own)."""
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.lifespan = asyncio.ensure_future(self.app({"type": "lifespan"}, inbox.get, outbox.put))
        await inbox.put({"type": "lifespan.startup"})
        answer = await outbox.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"startup failed: {answer}")


def serve(kind: str, port: int) -> None:
    """A child process: one server of ``kind`` on 127.0.0.1:``port`` until it is stopped."""
    options = _options(ServerLimits())
    app: Any
    bridge: Bridge | None = None
    if kind == "asgi":
        app = asgi_app
    elif kind == "edge-rsgi":
        from pythonhosted.config import load_settings
        from pythonhosted.files.service import build_app

        app = bridge = Bridge(build_app(load_settings()))
    else:
        app = RSGIBare(kind)
    options["interface"] = Interfaces.ASGI if kind == "asgi" else Interfaces.RSGI
    listener = claim(Bind("127.0.0.1", port), options["backlog"])

    async def main() -> None:
        if bridge is not None:
            await bridge.start()
        server = _EmbeddedServer(app, address="127.0.0.1", port=port, **options)
        server._claimed = listener
        await server.serve()

    uvloop.run(main())


def launch(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def child(kind: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Bind]:
    bind = Bind("127.0.0.1", free_port())
    argv = [sys.executable, __file__, "--serve", kind, "--port", str(bind.port)]
    return launch(argv, env), bind


def report(label: str, reference: str, results: dict[str, Load]) -> None:
    base = results[reference].cpu_us
    for name, load in results.items():
        print(
            f"  {label:<6} {name:<15} {load.rps:>9,.0f} req/s {load.cpu_us:>7.1f} us/req"
            f"  {load.cpu_us / base:>5.2f}x {reference}",
            flush=True,
        )


def bare(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-rsgi-"))
    (root / "tmp").mkdir()
    (root / "5mb.bin").write_bytes(os.urandom(FIVE_MB))
    env = {**os.environ, FILE_ENV: str(root / "5mb.bin")}
    servers = {kind: child(kind, env) for kind in BARE}
    try:
        for _, bind in servers.values():
            wait_for_port(bind, timeout=60)
        print(
            f"\n1. bare apps, 10 KB body + 20 headers, wrk -c{args.connections} -d{args.duration}s"
        )
        for round_ in range(args.rounds):
            results = {
                kind: wrk(f"{bind.url()}/x", process.pid, args.connections, args.duration)
                for kind, (process, bind) in servers.items()
            }
            report(f"r{round_ + 1}", "asgi", results)
            print(f"  load average {os.getloadavg()[0]:.1f}")
        if not args.skip_edge:
            edge(args)
        print(f"\n3. {args.readers} readers of a 64 MB stream that read nothing: RSS per reader")
        for kind in ("asgi", "rsgi-stream"):
            process, bind = servers[kind]
            idle = memory_mb(process.pid)[0]
            peak = asyncio.run(stalled_readers(bind, args.readers, process.pid))
            per = (peak - idle) * 1024 / args.readers
            print(f"  {kind:<12} idle {idle:7.1f} MB  peak {peak:7.1f} MB  {per:9,.0f} KB/reader")
        per_byte(args, root, servers)
    finally:
        for process, _ in servers.values():
            stop(process)
        shutil.rmtree(root, ignore_errors=True)


def per_byte(
    args: argparse.Namespace, root: Path, bare: dict[str, tuple[subprocess.Popen[bytes], Bind]]
) -> None:
    """Part 4: a 5 MB body, CPU per MB: ASGI and RSGI streams of 256 KB pieces from memory
    (the route of a cached body), RSGI ``response_file_range`` (granian reads the file),
    nginx (sendfile) as the reference."""
    if shutil.which("nginx") is None:
        print("\n4. per byte: left out, no nginx (apt-get install nginx-light)")
        return
    bind = Bind("127.0.0.1", free_port())
    conf = f"    server {{ listen 127.0.0.1:{bind.port}; root {root}; }}"
    (root / "nginx.conf").write_text(nginx_conf(root, "off", conf))
    nginx = launch(["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)])
    servers = {
        "nginx": (nginx, bind),
        "asgi": bare["asgi"],
        "rsgi-stream": bare["rsgi-stream"],
        "rsgi-file": bare["rsgi-bytes"],
    }
    try:
        wait_for_port(bind, timeout=60)
        print(f"\n4. a 5 MB body, CPU per MB, wrk -c16 -d{args.duration}s")
        for round_ in range(args.rounds):
            base = 0.0
            for name, (process, at) in servers.items():
                path = "/5mb.bin" if name == "nginx" else "/5mb"
                load = wrk(at.url() + path, process.pid, 16, args.duration)
                base = base or load.cpu_us_per_mb  # nginx runs first
                print(
                    f"  r{round_ + 1}     {name:<15} {load.mbps:>9,.0f} MB/s"
                    f"  {load.cpu_us_per_mb:>7.1f} us/MB  {load.cpu_us_per_mb / base:>5.2f}x nginx",
                    flush=True,
                )
            print(f"  load average {os.getloadavg()[0]:.1f}")
    finally:
        stop(nginx)


async def stalled_readers(bind: Bind, count: int, pid: int, seconds: float = 4.0) -> float:
    """``count`` connections that ask for /big and read nothing; the server's peak RSS."""
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection(bind.host, bind.port)
        writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        writers.append(writer)
    peak, deadline = 0.0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        peak = max(peak, memory_mb(pid)[0])
    for writer in writers:
        writer.close()
    return peak


def edge(args: argparse.Namespace) -> None:
    if shutil.which("nginx") is None:
        print("\n2. the files edge: left out, no nginx (apt-get install nginx-light)")
        return
    root = Path(tempfile.mkdtemp(prefix="bench-rsgi-"))
    (root / "tmp").mkdir()
    store_dir = root / "files"
    store = open_store(f"file://{store_dir}")
    small = asyncio.run(upload(store, *wheel_of_size("small-pkg", 10 * 1024))).path
    big = asyncio.run(upload(store, *wheel_of_size("big-wheel", 5 * 2**20))).path
    nginx_bind = Bind("127.0.0.1", free_port())
    (root / "nginx.conf").write_text(
        nginx_conf(
            root,
            f"{root}/nginx-access.log combined buffer=64k",
            f"    server {{ listen 127.0.0.1:{nginx_bind.port}; root {store_dir}; }}",
        )
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        servers: dict[str, tuple[subprocess.Popen[bytes], Bind]] = {}
        processes.append(launch(["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)]))
        servers["nginx"] = processes[-1], nginx_bind
        for kind in ("asgi", "rsgi"):
            env = {
                **os.environ,
                "PYTHONHOSTED_DATA_DIR": str(root / f"data-{kind}"),
                "PYTHONHOSTED_FILES__PRIMARY": f"file://{store_dir}",
                "PYTHONHOSTED_FILES__LOGS": f"file://{root}/logs-{kind}",
            }
            if kind == "asgi":
                bind = Bind("127.0.0.1", free_port())
                command = ["files", "serve", "--bind", str(bind)]
                processes.append(launch([sys.executable, "-m", "pythonhosted", *command], env))
            else:
                process, bind = child("edge-rsgi", env)
                processes.append(process)
            servers[f"edge {kind}"] = processes[-1], bind
        for _, bind in servers.values():
            wait_for_port(bind, timeout=60)
        cases = [("10 KB", small, []), ("suffix", big, ["Range: bytes=-8192"])]
        print(f"\n2. the files edge (download logging on), wrk -c{args.connections}")
        for round_ in range(args.rounds):
            for label, path, headers in cases:
                results = {
                    name: wrk(bind.url() + path, process.pid, args.connections, args.duration,
                              headers)
                    for name, (process, bind) in servers.items()
                }  # fmt: skip
                report(f"r{round_ + 1}", "nginx", results)
                asgi, rsgi = results["edge asgi"].cpu_us, results["edge rsgi"].cpu_us
                print(
                    f"  {label}: RSGI / ASGI CPU per request {rsgi / asgi:.2f};"
                    f" load average {os.getloadavg()[0]:.1f}"
                )
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--skip-edge", action="store_true", help="bare apps and memory only")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if shutil.which("wrk") is None:
        sys.exit("bench/rsgi.py: wrk not found (apt-get install wrk)")
    print(f"machine: {machine()}")
    print("CPU = user + system time of the server's process group per request")
    bare(args)  # with the edge (part 2) in the middle, while the bare servers wait


if __name__ == "__main__":
    main()
