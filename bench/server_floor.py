"""What a Python HTTP server's request costs at the floor, against granian's ASGI and nginx.

    .venv/bin/python bench/server_floor.py [--duration 5] [--rounds 3] [--connections 64]

Issue 17.2 asks the files edge for <= 3x nginx's CPU per small request; BENCHMARKS.md said a
Python server could not come within 3x ("the kernel's ~15-18 us a request and Python's
per-request frames"). This measures that claim instead of reasoning about it. Four servers
answer every request with a 10 KB body and the 20 headers of bench/rsgi.py, one process each,
in the same run (wrk ``-t1``, CPU = user + system time of the server's process group per
request):

- ``native``: an ``asyncio.Protocol`` on uvloop, requests parsed by httptools (llhttp), one
  prebuilt response written per request: no framework, no per-request objects but the
  parser's callbacks. The floor of any Python server.
- ``mini-asgi``: the same, calling an ASGI app (scope dict, ``receive``/``send`` as
  coroutines, the app's coroutine stepped inline without a task, the head built from the
  app's header list): what the ASGI interface itself adds to that floor.
- ``granian-asgi``: the same ASGI app on granian with our servers' options (bench/rsgi.py's
  ``asgi`` child): what the files edge runs on today.
- ``nginx``: one worker serving a 10 KB file (``sendfile``), the reference.

Each server is its own process group, stopped by its id; loopback only; bounded runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httptools
import uvloop

from loadgen import Load, machine, nginx_conf, wrk
from pythonhosted.web.server import Bind, free_port, wait_for_port
from rsgi import BODY, HEADERS, asgi_app, child, launch, stop

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in HEADERS) + b"\r\n" + BODY
)
NATIVE = ("native", "mini-asgi")


class Native(asyncio.Protocol):
    """One connection of the ``native`` server: parse, answer the prebuilt response."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(RESPONSE)


class MiniASGI(Native):
    """One connection of the ``mini-asgi`` server: the same parser, an ASGI call per request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head = b""

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self.url)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": self.parser.get_http_version(),
            "method": self.parser.get_method().decode(),
            "scheme": "http",
            "path": url.path.decode(),
            "raw_path": url.path,
            "query_string": url.query or b"",
            "root_path": "",
            "headers": self.headers,
            "client": None,
            "server": None,
        }
        self.headers = []
        call = asgi_app(scope, self.receive, self.send)
        try:
            call.send(None)
        except StopIteration:
            return
        raise RuntimeError("the bare app awaits nothing that suspends")

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            lines = [b"HTTP/1.1 %d OK\r\n" % message["status"]]
            lines += [name + b": " + value + b"\r\n" for name, value in message["headers"]]
            self.head = b"".join(lines) + b"\r\n"
        else:
            self.transport.write(self.head + message.get("body", b""))


def serve(kind: str, port: int) -> None:
    protocol = Native if kind == "native" else MiniASGI

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            protocol, "127.0.0.1", port, backlog=4096
        )
        await server.serve_forever()

    uvloop.run(main())


def measure(args: argparse.Namespace, root: Path) -> None:
    servers: dict[str, tuple[subprocess.Popen[bytes], Bind]] = {}
    for kind in NATIVE:
        bind = Bind("127.0.0.1", free_port())
        argv = [sys.executable, __file__, "--serve", kind, "--port", str(bind.port)]
        servers[kind] = launch(argv), bind
    servers["granian-asgi"] = child("asgi")
    bind = Bind("127.0.0.1", free_port())
    (root / "x").write_bytes(BODY)
    conf = nginx_conf(root, "off", f"    server {{ listen 127.0.0.1:{bind.port}; root {root}; }}")
    (root / "nginx.conf").write_text(conf.replace("worker_processes auto;", "worker_processes 1;"))
    servers["nginx"] = launch(["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)]), bind
    try:
        for process, bind in servers.values():
            wait_for_port(bind, timeout=60, process=process)
        for round_ in range(args.rounds):
            results: dict[str, Load] = {
                kind: wrk(
                    f"{bind.url()}/x", process.pid, args.connections, args.duration, threads=1
                )
                for kind, (process, bind) in servers.items()
            }
            base = results["nginx"].cpu_us
            print(f"round {round_ + 1}, load average {os.getloadavg()[0]:.1f}")
            for kind, load in results.items():
                print(
                    f"  {kind:<13} {load.rps:>9,.0f} req/s {load.cpu_us:>6.1f} us/req"
                    f"  {load.cpu_us / base:>5.2f}x nginx's CPU",
                    flush=True,
                )
    finally:
        for process, _ in servers.values():
            stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--serve", choices=NATIVE, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/server_floor.py: {tool} not found (make bench-peers)")
    print(f"machine: {machine()}")
    print(f"10 KB body + 20 headers, wrk -t1 -c{args.connections} -d{args.duration}s")
    root = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    (root / "tmp").mkdir()
    try:
        measure(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
