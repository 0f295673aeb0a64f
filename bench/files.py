"""Benchmark the files edge against nginx and the servers users pick, in the same run.

    .venv/bin/python bench/files.py [--duration 10] [--connections 64] [--workers 1]
                                    [--threads 2] [--rounds 1] [--peers .tools/peers]
                                    [--src DIR ...] [--case TEXT ...]

Needs nginx and wrk (Debian: nginx-light, wrk). The peers, pypiserver and devpi-server, run
from their own virtualenv (``make bench-peers`` builds ``.tools/peers``; ``--peers DIR``
names another, and a peer that is not there is left out with a note). Everything listens on
127.0.0.1, every load is bounded by --duration, and every process started here is stopped
by its PID at the end. Download logging is ON in our service (a local log store), as in
production.

The servers: our edge; nginx as shipped (``sendfile on``, access log with a 64 KB buffer);
nginx+, the same nginx sending every header our edge sends (security, CORS,
``x-pypi-file-*``); pypiserver (its default server, waitress when installed) and
devpi-server, each serving the same files from its own store. For each case the servers run
one after another, ``--rounds`` times over; each line gives requests/s (MB/s for the large
files) with its ratio to nginx, and the CPU time of the server's processes per request with
its ratio to nginx's: the targets (issue 17: 10 KB, the suffix range, 5 MB) are on that CPU
ratio, which other jobs' load disturbs far less than throughput; for a whole file, CPU per
request is CPU per byte. The 64 MB wheel is over our memory cache's object limit, so it
measures the route every large wheel takes (read from disk piece by piece).

``--src`` runs one edge per source tree (``ours1``, ``ours2``, ...), each measured in turn
within every case, so a change is compared with what it replaces under the same load;
``--case`` keeps the cases whose label contains the text (``--case "5 MB"``).

Our edge runs with one worker by default: on two cores shared with wrk, a second
worker costs more CPU per request than it brings (BENCHMARKS.md). Memory under slow clients:
``bench/files_slow.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadgen import Load, machine, nginx_conf, wrk
from pythonhosted.files.upload import upload
from pythonhosted.samples import wheel_of_size
from pythonhosted.storage import open_store
from pythonhosted.web.server import Bind, free_port, wait_for_port

HERE = Path(__file__).resolve().parent

# The response headers the files-edge spec asks for (rules 10, 14, 15, 17), so that nginx+
# sends what our edge sends; the x-pypi-file-* values are constants nginx cannot look up.
SAME_HEADERS = "\n".join(
    f"            add_header {name} {value} always;"
    for name, value in [
        ("Cache-Control", '"max-age=365000000, immutable, public"'),
        ("X-Frame-Options", "deny"),
        ("X-XSS-Protection", '"1; mode=block"'),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Robots-Header", "noindex"),
        ("Access-Control-Allow-Origin", '"*"'),
        ("Access-Control-Allow-Methods", '"GET, OPTIONS"'),
        ("Access-Control-Allow-Headers", "Range"),
        ("Access-Control-Expose-Headers", '"Content-Length, Content-Range, Accept-Ranges"'),
        ("X-PyPI-File-Project", "bench-project"),
        ("X-PyPI-File-Version", "1.0"),
        ("X-PyPI-File-Package-Type", "bdist_wheel"),
        ("X-PyPI-File-Python-Version", "py3"),
    ]
)


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` and all its descendants (the workers), in MB.

    RSS counts the pages forked workers share with their parent once per process; PSS splits
    them, so the PSS sum is what the service really occupies.
    """
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    rss = pss = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
        except OSError:
            continue
        rss += int(re.search(r"^Rss:\s+(\d+)", rollup, re.M).group(1))  # type: ignore[union-attr]
        pss += int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))  # type: ignore[union-attr]
    return rss / 1024, pss / 1024


@dataclass
class Server:
    """One server under test: its process group, address and the URL path of each file."""

    name: str
    process: subprocess.Popen[bytes]
    base: str
    paths: dict[str, str]
    note: str = ""


@dataclass(frozen=True)
class Case:
    label: str
    file: str  # a key of Server.paths
    headers: list[str]
    metric: str  # "rps" or "mbps"
    unit: str
    targeted: bool = True  # issue 17 sets a CPU target for it

    @property
    def per(self) -> str:
        """What CPU is counted per: a whole file's per MB (a 64 MB response may not complete
        often enough in a run to count requests), else per request."""
        return "MB" if self.metric == "mbps" else "req"

    def cpu(self, load: Load) -> float:
        return load.cpu_us_per_mb if self.metric == "mbps" else load.cpu_us


CASES = [
    Case("10 KB file", "small", [], "rps", "requests/s"),
    Case("5 MB wheel", "big", [], "mbps", "MB/s"),
    Case("suffix range bytes=-8192 of the 5 MB wheel", "big", ["Range: bytes=-8192"], "rps",
         "requests/s"),
    # Over cache_object_max_bytes: the route of every large wheel, read from disk piece by piece.
    Case("64 MB wheel (over the memory cache)", "huge", [], "mbps", "MB/s", targeted=False),
]  # fmt: skip
CPU_TARGET = 3.0  # our CPU per request at most this many times nginx's (issue 17)


def launch(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A server in its own process group (its CPU is counted by group; it is stopped by PID)."""
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def pypiserver(peers: Path, root: Path, files: dict[str, tuple[str, bytes]]) -> Server | None:
    """pypiserver over a flat directory of the same files (no authentication)."""
    command = peers / "bin" / "pypi-server"
    if not command.exists():
        print(f"pypiserver left out: no {command} (make bench-peers)")
        return None
    directory = root / "pypiserver"
    directory.mkdir()
    for filename, data in files.values():
        (directory / filename).write_bytes(data)
    bind = Bind("127.0.0.1", free_port())
    process = launch(
        [str(command), "run", "-p", str(bind.port), "-i", bind.host, "-a", ".", "-P", ".",
         "--log-stream", "none", str(directory)]
    )  # fmt: skip
    wait_for_port(bind, timeout=60)
    paths = {case: f"/packages/{filename}" for case, (filename, _) in files.items()}
    return Server("pypiserver", process, bind.url(), paths)


def devpi(peers: Path, root: Path, files: dict[str, tuple[str, bytes]]) -> Server | None:
    """devpi-server with the files uploaded to a private index (no PyPI mirror)."""
    init, command = peers / "bin" / "devpi-init", peers / "bin" / "devpi-server"
    if not command.exists():
        print(f"devpi-server left out: no {command} (make bench-peers)")
        return None
    serverdir = root / "devpi"
    subprocess.run(
        [str(init), "--serverdir", str(serverdir), "--root-passwd", "root", "--no-root-pypi"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    bind = Bind("127.0.0.1", free_port())
    process = launch(
        [str(command), "--serverdir", str(serverdir), "--host", bind.host, "--port", str(bind.port)]
    )
    wait_for_port(bind, timeout=300)
    with httpx.Client(base_url=bind.url(), headers={"Accept": "application/json"}) as client:
        login = client.post("/+login", json={"user": "root", "password": "root"})
        token = login.raise_for_status().json()["result"]["password"]
        client.headers["X-Devpi-Auth"] = base64.b64encode(f"root:{token}".encode()).decode()
        client.put("/root/bench", json={"bases": [], "volatile": True}).raise_for_status()
        paths = {}
        for case, (filename, data) in files.items():
            name, version = filename.split("-")[:2]
            client.post(
                "/root/bench/",
                data={":action": "file_upload", "name": name, "version": version},
                files={"content": (filename, data)},
            ).raise_for_status()
            page = client.get(
                f"/root/bench/+simple/{name}/",
                headers={"Accept": "text/html"},
                follow_redirects=True,
            )
            link = re.search(r'href="\.\./\.\./(\+f/[^"#]+)', page.text)
            assert link is not None, page.text
            paths[case] = f"/root/bench/{link.group(1)}"
    return Server("devpi", process, bind.url(), paths)


def ranges_work(server: Server, path: str) -> bool:
    response = httpx.get(server.base + path, headers={"Range": "bytes=-8192"}, timeout=60)
    return response.status_code == 206 and len(response.content) == 8192


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="our worker processes (nginx: auto)")
    parser.add_argument("--rounds", type=int, default=1, help="times over every case and server")
    parser.add_argument("--peers", type=Path, default=HERE.parent / ".tools" / "peers")
    parser.add_argument("--no-peers", action="store_true", help="ours and nginx only")
    parser.add_argument(
        "--src",
        type=Path,
        action="append",
        help="run our edge from this source tree (repeatable: one edge per tree, measured in"
        " turn in each case, e.g. a `git worktree` of main against this branch)",
    )
    parser.add_argument(
        "--case", action="append", help="only the cases whose label contains this (repeatable)"
    )
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/files.py: {tool} not found (apt-get install nginx-light wrk)")

    root = Path(tempfile.mkdtemp(prefix="bench-files-"))
    (root / "tmp").mkdir()
    store_dir = root / "files"
    store = open_store(f"file://{store_dir}")
    files = {
        "small": wheel_of_size("small-pkg", 10 * 1024),
        "big": wheel_of_size("big-wheel", 5 * 2**20),
        "huge": wheel_of_size("huge-wheel", 64 * 2**20),
    }
    paths = {case: asyncio.run(upload(store, *file)).path for case, file in files.items()}

    ours_bind = Bind("127.0.0.1", free_port())
    nginx_bind = Bind("127.0.0.1", free_port())
    same_bind = Bind("127.0.0.1", free_port())
    (root / "nginx.conf").write_text(
        nginx_conf(
            root,
            f"{root}/nginx-access.log combined buffer=64k",
            f"""    server {{
        listen 127.0.0.1:{nginx_bind.port};
        root {store_dir};
        location / {{ add_header Cache-Control "max-age=365000000, immutable, public"; }}
    }}
    server {{
        listen 127.0.0.1:{same_bind.port};
        root {store_dir};
        location / {{
{SAME_HEADERS}
        }}
    }}""",
        )
    )
    env = {**os.environ, "PYTHONHOSTED_DATA_DIR": str(root / "data")}
    servers: list[Server] = []
    try:
        nginx = launch(["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)])
        servers.append(Server("nginx", nginx, nginx_bind.url(), paths))  # first: the reference
        binds = [nginx_bind, same_bind]
        trees = args.src or [None]
        for number, tree in enumerate(trees, 1):
            bind = ours_bind if number == 1 else Bind("127.0.0.1", free_port())
            ours = launch(
                [sys.executable, "-m", "pythonhosted", "files", "serve", "--primary",
                 f"file://{store_dir}", "--logs", f"file://{root}/logs/{number}", "--bind",
                 str(bind), "--workers", str(args.workers)],
                env if tree is None else {**env, "PYTHONPATH": str(tree)},
            )  # fmt: skip
            name = "ours" if tree is None else f"ours{number}"
            if tree is not None:
                print(f"{name}: {tree}")
            servers.append(Server(name, ours, bind.url(), paths))
            binds.append(bind)
        servers.append(Server("nginx+", nginx, same_bind.url(), paths))
        for bind in binds:
            wait_for_port(bind, timeout=60)
        if not args.no_peers:
            for peer in (pypiserver, devpi):
                started = peer(args.peers, root, files)
                if started is not None:
                    servers.append(started)
        for server in servers:
            if not ranges_work(server, server.paths["big"]):
                server.note = "no ranges"
        print(f"machine: {machine()}")
        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s; download logging on;"
            f" ours: {args.workers} worker(s); nginx: worker_processes auto"
        )
        print("CPU = user + system time of the server's processes per request (per MB for files)")
        for round_ in range(args.rounds):
            for case in CASES:
                if args.case and not any(part in case.label for part in args.case):
                    continue
                target = f"target <= {CPU_TARGET:g}x" if case.targeted else "no target"
                print(
                    f"\n{case.label} (round {round_ + 1}; CPU {target})\n"
                    f"  {'server':<11} {case.unit:>11} {'vs nginx':>9} "
                    f"{'CPU us/' + case.per:>11} {'vs nginx':>9} {'p99 ms':>8}"
                )
                results: dict[str, Load] = {}
                for server in servers:
                    if case.headers and server.note:
                        print(f"  {server.name:<11} {'-':>11}  ({server.note}: 200, whole file)")
                        continue
                    results[server.name] = result = wrk(
                        server.base + server.paths[case.file],
                        server.process.pid,
                        args.connections,
                        args.duration,
                        case.headers,
                        args.threads,
                    )
                    reference = results.get("nginx")
                    value = getattr(result, case.metric)
                    ratio = value / getattr(reference, case.metric) if reference else 0.0
                    cpu_ratio = case.cpu(result) / case.cpu(reference) if reference else 0.0
                    print(
                        f"  {server.name:<11} {value:>11,.0f} {ratio:>9.2f}"
                        f" {case.cpu(result):>11.1f} {cpu_ratio:>8.2f}x {result.p99_ms:>8.1f}",
                        flush=True,
                    )
                plain = results["nginx"]
                for name, mine in results.items():
                    if not name.startswith("ours"):
                        continue
                    print(
                        f"  {name} / nginx: CPU {case.cpu(mine) / case.cpu(plain):.2f}x "
                        f"({target}), {case.unit} "
                        f"{getattr(mine, case.metric) / getattr(plain, case.metric):.2f}x; "
                        f"load average {os.getloadavg()[0]:.1f}"
                    )
    finally:
        for process in {id(s.process): s.process for s in servers}.values():
            stop(process)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
