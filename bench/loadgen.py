"""What the HTTP benchmarks share: an nginx config, wrk runs, and the CPU a server spends.

Requests per second move with whatever else the two cores are doing; the CPU time a server's
processes spend per request does not, so every run reports both.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


def nginx_conf(root: Path, access_log: str, servers: str) -> str:
    """An nginx config for a benchmark: foreground, its files under ``root``, ``servers``
    (``server { ... }`` blocks) inside the http block."""
    return f"""
daemon off;
user root;
worker_processes auto;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log {access_log};
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    types {{ text/html html; text/css css; application/json json; }}
{servers}
}}
"""


@dataclass(frozen=True)
class Load:
    """One wrk run: throughput, tail latency and the server's CPU per request."""

    rps: float
    mbps: float
    p99_ms: float
    cpu_us: float  # user + system CPU of the server's process group per request
    cpu_us_per_mb: float  # the same per MB of responses read (exact however few complete)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every process in group ``pgid`` (a server and its workers)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str,
    pgid: int,
    connections: int,
    duration: int,
    headers: Sequence[str] = (),
    threads: int = 2,
) -> Load:
    """Drive ``url`` with ``wrk -t{threads}``; the server runs as process group ``pgid``.

    Error responses abort the benchmark: a fast 404 is not a result.
    """
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    before = group_cpu_seconds(pgid)
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=duration + 30
    ).stdout
    cpu = group_cpu_seconds(pgid) - before
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses\n{output}")
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", output)[0])
    amount, unit = _find(r"Transfer/sec:\s+([\d.]+)(\w+)", output)
    mbps = float(amount) * {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}[unit]
    amount, unit = _find(r"99%\s+([\d.]+)(\w+)", output)
    p99_ms = float(amount) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    requests, amount, unit = _find(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(\w+) read", output)
    read_mb = float(amount) * {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}[unit]
    return Load(
        rps, mbps, p99_ms, cpu / max(int(requests), 1) * 1e6, cpu / max(read_mb, 1e-9) * 1e6
    )


def _find(pattern: str, output: str) -> tuple[str, ...]:
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"wrk output lacks {pattern!r}:\n{output}")
    return match.groups()


def machine() -> str:
    """The facts a benchmark result needs next to it: cores, CPU model, current load."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {model}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )


@contextlib.contextmanager
def busy_loops(count: int, seconds: float = 1800) -> Iterator[None]:
    """``count`` processes spinning a core each (a loaded machine), each in a group of its
    own, bounded to ``seconds`` whatever happens to the caller, killed by id at the end."""
    spin = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    loops = [
        subprocess.Popen([sys.executable, "-c", spin], start_new_session=True) for _ in range(count)
    ]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
