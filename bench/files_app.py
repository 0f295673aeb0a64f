"""The files edge's own Python per request: its ASGI app called directly, no server, no socket.

    .venv/bin/python bench/files_app.py [--requests 100000] [--runs 3] [--src DIR ...]

What bench/files.py cannot isolate on a busy machine: the cost of the app itself (the service
shell, routing, the object cache, the download line) for a GET of a cached 10 KB wheel, as CPU
microseconds per request. ``--src`` takes source trees (``src/`` of another checkout, e.g. a
``git worktree`` of an older commit) and alternates between them in separate processes, so a
change to the hot path is measured against what it replaced in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadgen import machine

HERE = Path(__file__).resolve().parent


def measure(requests: int) -> float:
    """CPU microseconds per request, in this process (whichever ``pythonhosted`` it imports)."""
    from pythonhosted.config import FilesSettings, Settings
    from pythonhosted.files.service import build_edge
    from pythonhosted.files.upload import upload
    from pythonhosted.samples import build_wheel
    from pythonhosted.storage import open_store

    work = tempfile.mkdtemp(prefix="bench-files-app-")
    primary = f"file://{work}/primary"
    wheel = build_wheel("bench", "1.0", module_source="X = " + repr("x" * 10_000))
    record = asyncio.run(upload(open_store(primary), *wheel))
    files = FilesSettings(primary=primary, logs=f"file://{work}/logs")
    app = build_edge(Settings(data_dir=Path(work), files=files))
    scope = {
        "type": "http",
        "method": "GET",
        "path": record.path,
        "raw_path": record.path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"files"), (b"user-agent", b"pip/24.0"), (b"accept", b"*/*")],
        "scheme": "http",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        pass

    async def run() -> float:
        for _ in range(2_000):  # located, cached, warm
            await app(scope, receive, send)
        started = time.process_time()
        for _ in range(requests):
            await app(scope, receive, send)
        return (time.process_time() - started) / requests * 1e6

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--src", action="append", help="a source tree to measure (repeatable)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(f"{measure(args.requests):.3f}")
        return
    trees = args.src or [str(HERE.parent / "src")]
    print(machine())
    results: dict[str, list[float]] = {tree: [] for tree in trees}
    for _ in range(args.runs):
        for tree in trees:
            out = subprocess.run(
                [sys.executable, __file__, "--one", "--requests", str(args.requests)],
                env={"PYTHONPATH": f"{tree}:{HERE}", "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[tree].append(float(out))
    for tree, values in results.items():
        runs = ", ".join(f"{value:.2f}" for value in values)
        print(f"{tree}: median {sorted(values)[len(values) // 2]:.2f} us/request ({runs})")


if __name__ == "__main__":
    main()
