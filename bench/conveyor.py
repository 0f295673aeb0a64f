"""Benchmark conveyor: legacy redirects (warm cache vs fetch-every-time) and docs vs nginx.

    .venv/bin/python bench/conveyor.py [--duration 10] [--connections 64]

Needs nginx and wrk. One nginx serves both the package JSON API (a static
``/pypi/{project}/json`` with an ETag and ``Cache-Control: max-age=900``) and the docs
directory. Our conveyor runs twice against the same JSON API: with its cache (the design) and
with ``cache_entries=0`` (the reference design: fetch and parse the JSON on every request).
Conveyor runs ``--workers`` processes (default: one per core, as nginx's ``auto``).
Everything listens on 127.0.0.1, every load is bounded by --duration, and every process
started here is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import machine, nginx_conf, wrk
from pythonhosted.web.server import Bind, free_port, wait_for_port

SERVERS = """    server {{
        listen 127.0.0.1:{api_port};
        root {api};
        location / {{
            default_type application/json;
            add_header Cache-Control "max-age=900, public";
        }}
    }}
    server {{
        listen 127.0.0.1:{docs_port};
        root {docs};
    }}"""
PROJECT = "bench-project"


def project_json(releases: int = 100) -> bytes:
    """A mid-sized project: ``releases`` versions with an sdist and two wheels each."""
    files = {}
    for n in range(releases):
        version = f"1.{n}.0"
        names = [
            (f"bench_project-{version}.tar.gz", "source"),
            (f"bench_project-{version}-py3-none-any.whl", "py3"),
            (f"bench_project-{version}-cp311-cp311-manylinux_2_17_x86_64.whl", "cp311"),
        ]
        files[version] = [
            {
                "filename": name,
                "python_version": python,
                "url": f"https://files.example/packages/{n:02x}/ab/{'0' * 60}/{name}",
                "has_sig": False,
                "size": 1000,
                "digests": {"sha256": "0" * 64},
            }
            for name, python in names
        ]
    return json.dumps({"info": {"name": PROJECT}, "releases": files, "urls": []}).encode()


def docs_page() -> bytes:
    """A 10 KB Sphinx-like HTML page."""
    para = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 4 + "</p>\n"
    body = para * (10_000 // len(para))
    page = f"<!doctype html><html><head><title>bench</title></head><body>{body}</body></html>"
    return page.ljust(10 * 1024).encode()


def start_conveyor(
    root: Path, bind: Bind, api: Bind, docs: Path, cache: bool, workers: int
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONHOSTED_DATA_DIR": str(root / "data")}
    if not cache:
        env["PYTHONHOSTED_CONVEYOR__CACHE_ENTRIES"] = "0"
    return subprocess.Popen(
        [sys.executable, "-m", "pythonhosted", "conveyor", "serve", "--docs", f"file://{docs}",
         "--json-api", api.url(), "--bind", f"{bind.host}:{bind.port}",
         "--workers", str(workers)],
        env=env, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="conveyor's")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/conveyor.py: {tool} not found (apt-get install nginx-light wrk)")

    root = Path(tempfile.mkdtemp(prefix="bench-conveyor-"))
    (root / "tmp").mkdir()
    api_dir, docs_dir = root / "api", root / "docs"
    (api_dir / "pypi" / PROJECT).mkdir(parents=True)
    body = project_json()
    (api_dir / "pypi" / PROJECT / "json").write_bytes(body)
    (docs_dir / "proj").mkdir(parents=True)
    (docs_dir / "proj" / "index.html").write_bytes(docs_page())

    api, docs = Bind("127.0.0.1", free_port()), Bind("127.0.0.1", free_port())
    cached, uncached = Bind("127.0.0.1", free_port()), Bind("127.0.0.1", free_port())
    (root / "nginx.conf").write_text(
        nginx_conf(
            root,
            "off",
            SERVERS.format(api_port=api.port, api=api_dir, docs_port=docs.port, docs=docs_dir),
        )
    )
    nginx = subprocess.Popen(
        ["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)], start_new_session=True
    )
    with_cache = start_conveyor(root, cached, api, docs_dir, cache=True, workers=args.workers)
    without = start_conveyor(root, uncached, api, docs_dir, cache=False, workers=args.workers)
    processes = [nginx, with_cache, without]
    try:
        for bind in (api, docs, cached, uncached):
            wait_for_port(bind)
        legacy = "/packages/source/b/bench-project/bench-project-1.50.tar.gz"
        print(f"machine: {machine()}")
        print(
            f"wrk -t2 -c{args.connections} -d{args.duration}s; conveyor workers {args.workers}, "
            f"nginx workers auto; JSON API body {len(body)} bytes"
        )
        print(f"\n{'case':<52} {'req/s':>10} {'p99 ms':>8} {'CPU us/req':>10}")
        results = {}
        for label, url, server in [
            ("legacy redirect, cache on (warm)", cached.url() + legacy, with_cache),
            ("legacy redirect, cache off (reference design)", uncached.url() + legacy, without),
            ("docs 10 KB page /proj/, conveyor", cached.url() + "/proj/", with_cache),
            ("docs 10 KB page /proj/, nginx", docs.url() + "/proj/", nginx),
        ]:
            results[label] = result = wrk(url, server.pid, args.connections, args.duration)
            print(f"{label:<52} {result.rps:>10.1f} {result.p99_ms:>8.2f} {result.cpu_us:>10.1f}")
        legacy_ratio = results["legacy redirect, cache on (warm)"].rps / (
            results["legacy redirect, cache off (reference design)"].rps
        )
        docs_ratio = results["docs 10 KB page /proj/, conveyor"].rps / (
            results["docs 10 KB page /proj/, nginx"].rps
        )
        print(f"\nlegacy: cached / reference = {legacy_ratio:.1f}x (target >= 20x)")
        print(f"docs:   conveyor / nginx   = {docs_ratio:.2f}x (target >= 0.5x)")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
