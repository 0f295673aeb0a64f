"""camo's own Python per request: its ASGI app called directly, no server in front.

    .venv/bin/python bench/camo_app.py [--requests 20000] [--runs 3] [--src DIR ...]
                                       [--kind hit|miss] [--profile hit|miss]

What bench/camo.py cannot isolate on a busy machine: the CPU the camo app itself spends (the
service shell, the signature, the checks, the upstream exchange, the cache) for a GET of a
20 KB PNG, as CPU microseconds per request in the app's process, for

- a cache hit (``--cache-dir``, the image cached by the first request), and
- a miss (no cache: every request is an upstream exchange with a local nginx, which runs in
  its own process, so its CPU is not counted).

The app runs on uvloop, as served. ``--src`` takes source trees (``src/`` of another
checkout, e.g. a ``git worktree`` of an older commit) and alternates between them in separate
processes, so a change is measured against what it replaced in the same run. ``--profile``
prints cProfile's top functions for one kind instead (in-process, this tree).
Needs ``nginx`` (Debian: ``apt-get install nginx``); benchmark only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from camo import UPSTREAM_SERVER, nginx
from loadgen import machine

HERE = Path(__file__).resolve().parent
KEY = "bench-key"
PNG_BYTES = 20 * 1024
KINDS = ("hit", "miss")
BODY = {"type": "http.request", "body": b"", "more_body": False}


def measure(
    kind: str, upstream: str, requests: int, profile: str | None = None
) -> tuple[float, float]:
    """CPU microseconds per request of ``kind`` in this process, and the system (kernel) part
    of them; with ``profile`` (a sort order), also print cProfile's view of the measured
    requests."""
    import uvloop

    from pythonhosted.camo import sign_url
    from pythonhosted.camo.app import create_app
    from pythonhosted.config import CamoSettings
    from pythonhosted.web.types import Message, Receive

    work = Path(tempfile.mkdtemp(prefix="bench-camo-app-"))
    settings = CamoSettings.model_validate(
        {
            "key": KEY,
            "allow_networks": ["127.0.0.1/32"],
            "timeout": 60.0,
            "cache_dir": work / "cache" if kind == "hit" else None,
        }
    )
    app = create_app(settings)
    path = sign_url(f"{upstream}/img.png", KEY.encode())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"camo"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "scheme": "http",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[int] = []
    system: list[float] = []

    def receiver() -> Receive:
        """A request's ``receive`` as granian's behaves (camo watches it while it works
        upstream): a future, of the (empty) body on the loop's next turn, then one that stays
        pending while the client is there."""
        asked = False

        def receive() -> asyncio.Future[Message]:
            nonlocal asked
            loop = asyncio.get_running_loop()
            message: asyncio.Future[Message] = loop.create_future()
            if not asked:
                asked = True
                loop.call_soon(lambda: message.done() or message.set_result(BODY))
            return message

        return receive

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    async def run() -> tuple[float, float]:
        for _ in range(500):  # cached, memoised, pooled
            await app(scope, receiver(), send)
        if set(sent) != {200}:
            raise RuntimeError(f"camo answered {sorted(set(sent))}, not 200")
        profiler = None
        if profile is not None:
            import cProfile

            profiler = cProfile.Profile(time.process_time)  # CPU, not wall, time
            profiler.enable()
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(requests):
            await app(scope, receiver(), send)
        after = resource.getrusage(resource.RUSAGE_SELF)
        system.append((after.ru_stime - before.ru_stime) / requests * 1e6)
        spent = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats(profile).print_stats(45)
        await app.aclose()
        return spent / requests * 1e6, system[0]

    try:
        return uvloop.run(run())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--src", action="append", help="a source tree to measure (repeatable)")
    parser.add_argument("--kind", choices=KINDS, action="append", help="only these (repeatable)")
    parser.add_argument("--profile", choices=KINDS)
    parser.add_argument("--sort", default="tottime", help="cProfile's order (--profile)")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "UPSTREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        total, system = measure(args.one[0], args.one[1], args.requests)
        print(f"{total:.3f} {system:.3f}")
        return
    if shutil.which("nginx") is None:
        sys.exit("nginx not found: apt-get install nginx")
    from pythonhosted.web.server import Bind, free_port

    with tempfile.TemporaryDirectory(prefix="camo-app-bench-") as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)  # nginx workers run unprivileged and must read www/
        (tmp / "www").mkdir()
        (tmp / "www" / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(PNG_BYTES - 8))
        bind = Bind("127.0.0.1", free_port())
        conf = UPSTREAM_SERVER.format(port=bind.port, tmp=tmp, rate="2k")
        with nginx(tmp, "upstream", conf, bind, 1):
            if args.profile:
                total, system = measure(args.profile, bind.url(), args.requests, args.sort)
                print(f"{total:.2f} us/request, {system:.2f} of them in the kernel")
                return
            trees = args.src or [str(HERE.parent / "src")]
            kinds = args.kind or KINDS
            print(machine())
            results: dict[tuple[str, str], list[tuple[float, float]]] = {
                (kind, tree): [] for kind in kinds for tree in trees
            }
            for _ in range(args.runs):
                for kind in kinds:
                    for tree in trees:
                        command = [sys.executable, __file__, "--one", kind, bind.url()]
                        out = subprocess.run(
                            [*command, "--requests", str(args.requests)],
                            env={"PYTHONPATH": f"{tree}:{HERE}", "PATH": os.environ["PATH"]},
                            capture_output=True,
                            text=True,
                            check=True,
                        ).stdout
                        total, system = map(float, out.split())
                        results[kind, tree].append((total, system))
            print(f"load average after: {os.getloadavg()[0]:.1f}")
    for (kind, tree), values in results.items():
        runs = ", ".join(f"{total:.1f} ({system:.0f} kernel)" for total, system in values)
        median = sorted(total for total, _ in values)[len(values) // 2]
        print(f"{kind:4} {tree}: median {median:.1f} us/request; runs: {runs}")


if __name__ == "__main__":
    main()
