"""Rehearsal of the outside checks: every server, every way it runs, at 10x their size.

    .venv/bin/python bench/rehearsal.py idle|second|hostile|inputs|all [--only NAME[,NAME]]
        [--idle 10000] [--trickle 300] [--busy 0] [--dir /tmp/rehearsal] [--runs 1]

The servers: ``files serve``, ``index serve``, ``conveyor serve``, ``camo serve``,
``stats-web serve``, ``linehaul serve`` and ``pythonhosted serve`` (every service in one
process), and ``--workers 2`` of each that has the flag. Each row starts the server as a real
process (its own process group, killed by its id at the end, on loopback ports chosen here)
and checks:

- ``idle``: ``--idle`` connections that send nothing (spread over every port the server
  has) and ``--trickle`` that send a request head one byte a second; meanwhile one request
  per route family, on a fresh connection, must answer within ``PROMPT`` seconds; after the
  crowd leaves the server's RSS (its whole process tree) must come back within
  ``RSS_SLACK`` of what it was before the crowd.
- ``second``: a second instance on an address the first holds (the same command, and the
  mixed cases: ``files serve`` on the port ``serve`` gives the files edge, ``--workers 2``
  twice, ``0.0.0.0`` against ``127.0.0.1`` both ways, ``[::]`` against ``0.0.0.0``) must exit
  2 with one line on stderr within ``SECOND_WITHIN`` seconds, and the first still answer every
  request (no port shared by SO_REUSEPORT).
- ``hostile``: request heads at 1 MB (request line, one header), 10,000 headers, query strings
  of 100,000 parameters, 64-deep percent-encoding, on every route family: each answered with
  a status (or the connection closed) within ``HOSTILE_WITHIN`` seconds, the server's peak RSS
  within ``HOSTILE_RSS`` of its idle RSS, and it still serving after.

- ``inputs``: hostile inputs through the commands (``linehaul ingest --once`` of a 100 MB
  line, 3,000,000 junk lines, 1 GB of newlines; ``docs upload`` of a 4 GB zip bomb and a
  1,000,000-entry zip): one line on stderr, no traceback, peak RSS under ``INPUT_RSS``
  (tests/support/peak.py's VmHWM, the command's own).

``--busy N`` runs N busy loops beside (their own processes, killed by id at the end): the
loaded-machine row. Loopback only; every wait is bounded. Prints one line per check (PASS or
FAIL with its numbers), then the machine (CPU model, load average) and the server's CPU seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loadgen import busy_loops, machine

PYTHON = [sys.executable, "-m", "pythonhosted"]
PROMPT = 2.0  # s: a request beside the idle crowd
RSS_SLACK = 64 << 20  # bytes over the RSS before the crowd, once it left
SECOND_WITHIN = 30.0  # s for a second instance to give up
HOSTILE_WITHIN = 10.0
HOSTILE_RSS = 256 << 20
START_WITHIN = 90.0
MB = 1 << 20


@dataclass
class Server:
    """One row of the matrix: a command, its ports and the routes each port answers."""

    name: str
    argv: list[str]
    ports: dict[str, int]  # service -> port
    routes: dict[str, list[str]]  # service -> paths, one per route family
    env: dict[str, str] = field(default_factory=dict)
    head_deadline: float = 10.0  # http.header_timeout; camo's is go-camo's read timeout, 30 s


_TAKEN: set[int] = set()


def _port() -> int:
    """A free port no other row of this run was given."""
    from pythonhosted.web.server import free_port

    while (port := free_port()) in _TAKEN:
        pass
    _TAKEN.add(port)
    return port


def prepare(root: Path) -> None:
    """The tests' small warehouse (demo-pkg's downloads; its wheels in ``root/files``), once."""
    if (root / "warehouse.duckdb").exists():
        return
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from support.stats_warehouse import build, event_lines

    build(root, event_lines())


def servers(root: Path, only: set[str] | None) -> list[Server]:
    """Every row, each on ports of its own."""
    prepare(root)
    files = f"file://{root}/files"
    docs = f"file://{root}/docs"
    (root / "docs").mkdir(parents=True, exist_ok=True)
    wheel = "/packages/ab/cd/0123456789abcdef0123456789abcdef/probe-1.0-py3-none-any.whl"
    files_routes = [
        "/_health",
        "/metrics",
        wheel,
        f"{wheel}.metadata",
        "/packages/3.8/p/probe/probe-1.0.tar.gz",
    ]
    index_routes = ["/simple/", "/simple/demo-pkg/", "/_health", "/metrics"]
    docs_routes = ["/_health", "/metrics", "/probe/", "/probe/index.html", "/"]
    camo_routes = [
        "/_health",
        "/metrics",
        "/0123456789abcdef0123456789abcdef01234567/687474703a2f2f782f",
    ]
    stats_routes = [
        "/_health",
        "/",
        "/api/packages/demo-pkg/recent",
        "/badge/demo-pkg.svg",
        "/packages/demo-pkg",
        "/api/v1/top?period=week",
    ]
    linehaul_routes = ["/_health", "/metrics"]
    rows: list[Server] = []

    def add(name: str, argv: list[str], service: str, routes: list[str], **env: str) -> None:
        port = _port()
        full = [*argv, "--bind", f"127.0.0.1:{port}"]
        deadline = 30.0 if service == "camo" else 10.0
        rows.append(Server(name, full, {service: port}, {service: routes}, dict(env), deadline))

    warehouse = str(root / "warehouse.duckdb")
    for workers in ((), ("--workers", "2")):
        tag = " --workers 2" if workers else ""
        add(
            f"files serve{tag}",
            ["files", "serve", "--primary", files, *workers],
            "files",
            files_routes,
        )
        add(
            f"conveyor serve{tag}",
            ["conveyor", "serve", "--docs", docs, *workers],
            "docs",
            docs_routes,
        )
        add(f"camo serve{tag}", ["camo", "serve", "-k", "probe-key", *workers], "camo", camo_routes)
        cache = ["--cache-dir", str(root / f"camo-cache{len(workers)}")]  # on our server, web/h1
        camo = ["camo", "serve", "-k", "probe-key", *cache, *workers]
        add(f"camo serve --cache-dir{tag}", camo, "camo", camo_routes)
        add(
            f"stats-web serve{tag}",
            ["stats-web", "serve", "--warehouse", f"duckdb://{warehouse}", *workers],
            "stats",
            stats_routes,
        )
    add("index serve", ["index", "serve", "--primary", files], "index", index_routes)
    add(
        "linehaul serve",
        ["linehaul", "serve"],
        "linehaul",
        linehaul_routes,
        PYTHONHOSTED_DATA_DIR=str(root / "linehaul-data"),
    )
    ports = {s: _port() for s in ("files", "docs", "camo", "linehaul", "stats")}
    setting = {
        "files": "FILES",
        "docs": "CONVEYOR",
        "camo": "CAMO",
        "linehaul": "LINEHAUL",
        "stats": "STATS_WEB",
    }
    rows.append(
        Server(
            "serve",
            ["serve", "--data-dir", str(root / "serve-data")],
            ports,
            {
                "files": files_routes + index_routes[:2],
                "docs": docs_routes,
                "camo": camo_routes,
                "linehaul": linehaul_routes,
                "stats": stats_routes,
            },
            {f"PYTHONHOSTED_{setting[s]}__BIND": f"127.0.0.1:{p}" for s, p in ports.items()},
        )
    )
    if only:
        exact = only & {r.name for r in rows}  # "serve" is in every row's name
        rows = [r for r in rows if r.name in exact or any(o in r.name for o in only - exact)]
    return rows


# --- processes --------------------------------------------------------------------------


@dataclass
class Running:
    server: Server
    process: subprocess.Popen[bytes]
    stderr: Path


def _env(server: Server, root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONHOSTED_LOG_LEVEL": "WARNING", **server.env}


@contextlib.contextmanager
def started(server: Server, root: Path) -> Iterator[Running]:
    """The server's process, its own group, killed (whole group, by its id) on the way out."""
    stderr = root / f"{server.name.replace(' ', '_')}.{time.monotonic_ns()}.err"
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [*PYTHON, *server.argv],
            cwd=root,
            env=_env(server, root),
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    running = Running(server, process, stderr)
    try:
        deadline = time.monotonic() + START_WITHIN
        while not all(answers(p, "/_health") for p in server.ports.values()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} did not start: {stderr.read_text()[-2000:]}")
            time.sleep(0.2)
        yield running
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # a worker left behind in the group
        os.killpg(process.pid, signal.SIGKILL)


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss(pid: int) -> int:
    total = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in tree(pid):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# --- HTTP on raw sockets ----------------------------------------------------------------


def exchange(port: int, head: bytes, within: float) -> tuple[int | None, float]:
    """Send ``head`` on a fresh connection; the status answered (None: closed unanswered)
    and the seconds it took. A send the server stops reading ends the send quietly."""
    began = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=within) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(head)
            data = b""
            while b"\r\n" not in data:
                piece = sock.recv(4096)
                if not piece:
                    break
                data += piece
    except TimeoutError:
        return -1, time.monotonic() - began
    except OSError:
        return None, time.monotonic() - began
    line = data.split(b"\r\n", 1)[0].split()
    status = int(line[1]) if len(line) > 1 and line[1].isdigit() else None
    return status, time.monotonic() - began


def get(path: str, extra: bytes = b"") -> bytes:
    return (
        b"GET "
        + path.encode()
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + extra
        + b"Connection: close\r\n\r\n"
    )


def answers(port: int, path: str, within: float = 2.0) -> bool:
    status, _ = exchange(port, get(path), within)
    return status is not None and (0 < status < 500 or status == 503)


# --- the checks -------------------------------------------------------------------------


@dataclass
class Result:
    row: str
    check: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.row:28} {self.check:34} {self.detail}"


def open_idle(
    ports: Sequence[int], count: int, source: Callable[[int], str]
) -> list[socket.socket]:
    """``count`` connections spread over ``ports``, the n-th from loopback address
    ``source(n)`` (rotating sources, so the ephemeral ports of one are never the limit)."""
    sockets = []
    for n in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((source(n), 0))
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", ports[n % len(ports)]))
        sockets.append(sock)
    return sockets


def trickle_once(tricklers: list[tuple[socket.socket, bytes]], sent: int) -> None:
    head = sent
    for sock, text in tricklers:
        if head < len(text):
            with contextlib.suppress(OSError):
                sock.send(text[head : head + 1])


def closed_count(sockets: Sequence[socket.socket]) -> int:
    """How many of ``sockets`` the server has closed (readable with EOF or an error)."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        with contextlib.suppress(ValueError, OSError):
            selector.register(sock, selectors.EVENT_READ)
    closed = 0
    for key, _ in selector.select(timeout=0):
        sock = key.fileobj
        assert isinstance(sock, socket.socket)
        try:
            if not sock.recv(65536, socket.MSG_PEEK):
                closed += 1
            else:
                closed += 1  # answered (a 408 or 400) and then closed
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    selector.close()
    return closed


def check_idle(running: Running, idle: int, trickle: int) -> list[Result]:
    server = running.server
    pid = running.process.pid
    ports = list(server.ports.values())
    name = server.name
    results = []
    # Warm every route once, so the RSS before is a served server's, not a fresh one's.
    for service, port in server.ports.items():
        for path in server.routes[service]:
            exchange(port, get(path), 10.0)
    time.sleep(1.0)
    before = rss(pid)
    cpu_before = cpu_seconds(pid)
    began = time.monotonic()
    crowd = open_idle(ports, idle, lambda n: f"127.0.{1 + n // 20000}.{2 + (n // 5000) % 200}")
    slow_head = get("/" + "a" * 200, b"X-Slow: " + b"b" * 200 + b"\r\n")
    slow = open_idle(ports, trickle, lambda n: f"127.0.200.{2 + n % 200}")
    tricklers = [(sock, slow_head) for sock in slow]
    opened = time.monotonic() - began
    time.sleep(1.0)
    slowest = 0.0
    failed = []
    for service, port in server.ports.items():
        for path in server.routes[service]:
            status, took = exchange(port, get(path), PROMPT * 5)
            slowest = max(slowest, took)
            if status is None or status < 0 or took > PROMPT:
                failed.append(f"{service}{path[:40]}={status}@{took:.1f}s")
    peak = rss(pid)
    results.append(
        Result(
            name,
            f"requests beside {idle} idle+{trickle} trickling",
            not failed,
            f"slowest {slowest:.2f}s (opened in {opened:.1f}s)"
            + ("; " + ", ".join(failed[:6]) if failed else ""),
        )
    )
    # Trickle one byte a second until the head deadline must have cut them.
    waited = int(server.head_deadline) + 4
    for second in range(waited):
        trickle_once(tricklers, second)
        time.sleep(1.0)
    cut_idle = closed_count(crowd)
    cut_trickle = closed_count([s for s, _ in tricklers])
    during = rss(pid)
    results.append(
        Result(
            name,
            "head deadline cuts idle and trickling",
            cut_idle >= idle * 0.99 and cut_trickle >= trickle * 0.99,
            f"idle cut {cut_idle}/{idle}, trickling cut {cut_trickle}/{trickle} "
            f"after {waited + 1} s",
        )
    )
    for sock in crowd:
        sock.close()
    for sock, _ in tricklers:
        sock.close()
    ok = all(answers(p, "/_health", 5.0) for p in ports)
    time.sleep(3.0)
    after = rss(pid)
    results.append(
        Result(
            name,
            "RSS back near idle after the crowd",
            ok and after - before < RSS_SLACK,
            f"RSS before {before / MB:.0f} MB, peak {max(peak, during) / MB:.0f} MB, "
            f"after {after / MB:.0f} MB; server CPU {cpu_seconds(pid) - cpu_before:.1f}s",
        )
    )
    return results


def hostile_heads(path: str) -> dict[str, bytes]:
    base, _, query = path.partition("?")
    sep = "&" if query else "?"
    return {
        "1 MB request line": get(path + sep + "q=" + "x" * MB),
        "1 MB header": get(path, b"X-Big: " + b"y" * MB + b"\r\n"),
        "10,000 headers": get(path, b"".join(b"X-H%d: v\r\n" % n for n in range(10_000))),
        "100,000 query parameters": get(path + sep + "&".join(f"p{n}=1" for n in range(100_000))),
        "64-deep percent-encoding": get(base + "/" + "%25" * 64 + "2F" + "%252e%252e" * 1000),
        "query of 100,000 repeated keys": get(path + sep + "&".join(["period=week"] * 100_000)),
        # The server's head limit (8 KB, granian's read buffer) answers all of the above 431
        # before any app sees them; these are as much as fits under it, which the apps parse.
        "3,500 parameters under the limit": get(path + sep + "&".join("a" for _ in range(3_500))),
        "3,500 path segments": get(base + "/a" * 3_500),
        "2,400-deep percent-encoding": get(base + "/" + "%25" * 2_400 + "41"),
        "600 repeated keys": get(path + sep + "&".join(["period=week"] * 600)),
        "90 headers": get(path, b"".join(b"X-H%d: v\r\n" % n for n in range(90))),
        "1,000 cookies": get(
            path, b"Cookie: " + b"; ".join(b"c%d=1" % n for n in range(1000)) + b"\r\n"
        ),
        "non-UTF-8 path": get(base + "/%ff%fe%80" * 100),
        "raw bytes in path": get(base).replace(b" HTTP", b"\xff\xfe\x80 HTTP", 1),
    }


def check_hostile(running: Running) -> list[Result]:
    server = running.server
    pid = running.process.pid
    results = []
    base = rss(pid)
    for service, port in server.ports.items():
        for path in server.routes[service]:
            plain, _ = exchange(port, get(path), HOSTILE_WITHIN)
            for kind, head in hostile_heads(path).items():
                cpu = cpu_seconds(pid)
                status, took = exchange(port, head, HOSTILE_WITHIN)
                peak = rss(pid)
                alive = answers(port, "/_health", 10.0)
                fine = (status or 400) < 500 or status == plain  # a 503 the plain request gets too
                ok = status != -1 and alive and peak - base < HOSTILE_RSS and fine
                if not ok or took > 1.0:
                    results.append(
                        Result(
                            server.name,
                            f"{kind} {service}{path[:24]}",
                            ok,
                            f"status {status} in {took:.2f}s, CPU {cpu_seconds(pid) - cpu:.2f}s, "
                            f"RSS {base / MB:.0f}->{peak / MB:.0f} MB, alive {alive}",
                        )
                    )
    if not results:
        results.append(
            Result(
                server.name,
                "every hostile head, every route",
                True,
                f"RSS {base / MB:.0f}->{rss(pid) / MB:.0f} MB",
            )
        )
    return results


def second_cases(root: Path) -> list[tuple[str, Server, Server]]:
    """(name, first, second): the second must be refused while the first serves."""
    rows = {r.name: r for r in servers(root, None)}
    cases = []
    for name, row in rows.items():
        cases.append((f"{name} twice", row, row))
    serve = rows["serve"]
    files = rows["files serve"]
    on_serve_port = Server(
        "files serve on serve's files port",
        [*files.argv[:-2], "--bind", f"127.0.0.1:{serve.ports['files']}"],
        {"files": serve.ports["files"]},
        files.routes,
    )
    cases.append(("files serve on serve's files port", serve, on_serve_port))
    stats_on_camo = Server(
        "stats-web on serve's camo port",
        ["stats-web", "serve", "--bind", f"127.0.0.1:{serve.ports['camo']}"],
        {"camo": serve.ports["camo"]},
        {},
    )
    cases.append(("stats-web serve on serve's camo port", serve, stats_on_camo))

    def rebind(row: Server, host: str) -> Server:
        port = next(iter(row.ports.values()))
        text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return Server(
            f"{row.name} on {text}",
            [*row.argv[:-2], "--bind", text],
            row.ports,
            row.routes,
            row.env,
        )

    cases.append(
        ("files 0.0.0.0 then 127.0.0.1", rebind(files, "0.0.0.0"), rebind(files, "127.0.0.1"))
    )
    cases.append(("files 127.0.0.1 then 0.0.0.0", files, rebind(files, "0.0.0.0")))
    cases.append(("files [::] then 0.0.0.0", rebind(files, "::"), rebind(files, "0.0.0.0")))
    cases.append(("files 0.0.0.0 then [::]", rebind(files, "0.0.0.0"), rebind(files, "::")))
    two = rows["files serve --workers 2"]
    cases.append(
        (
            "files --workers 2, then 1 worker on its port",
            two,
            Server("x", [*files.argv[:-2], "--bind", two.argv[-1]], two.ports, two.routes),
        )
    )
    return cases


def check_second(root: Path, only: set[str] | None) -> list[Result]:
    results = []
    for name, first, second in second_cases(root):
        if only and not any(o in name for o in only):
            continue
        with started(first, root) as running:
            began = time.monotonic()
            try:
                done = subprocess.run(
                    [*PYTHON, *second.argv],
                    cwd=root,
                    env=_env(second, root),
                    capture_output=True,
                    timeout=SECOND_WITHIN,
                    start_new_session=True,
                )
                code, lines = done.returncode, done.stderr.decode(errors="replace").splitlines()
            except subprocess.TimeoutExpired:
                code, lines = None, ["(still running: it started beside the first)"]
            took = time.monotonic() - began
            port = next(iter(first.ports.values()))
            statuses = {exchange(port, get("/_health"), 5.0)[0] for _ in range(20)}
            ok = (
                code == 2
                and len(lines) == 1
                and statuses == {200}
                and running.process.poll() is None
            )
            results.append(
                Result(
                    name,
                    "second instance refused",
                    ok,
                    f"exit {code} in {took:.1f}s, stderr {lines[:2]!r}, "
                    f"first answers {sorted(map(str, statuses))}",
                )
            )
    return results


# --- hostile inputs through the commands ------------------------------------------------

PEAK = Path(__file__).parents[1] / "tests" / "support" / "peak.py"
INPUT_RSS = 512 << 20  # a command's peak RSS over this on hostile input fails


def measured(
    argv: list[str], root: Path, timeout: float = 600.0
) -> tuple[int | None, list[str], int, float]:
    """(status, stderr lines, peak RSS, CPU seconds) of ``pythonhosted ARGV`` (None: timed out)."""
    peak_file = root / "peak"
    peak_file.unlink(missing_ok=True)
    env = {**os.environ, "PEAK_FILE": str(peak_file), "PYTHONHOSTED_LOG_LEVEL": "WARNING"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            [sys.executable, str(PEAK), *argv],
            cwd=root,
            env=env,
            capture_output=True,
            timeout=timeout,
            start_new_session=True,
        )
        status: int | None = done.returncode
        lines = done.stderr.decode(errors="replace").splitlines()
    except subprocess.TimeoutExpired:
        status, lines = None, ["(timed out)"]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak = int(peak_file.read_text()) if peak_file.exists() else 0
    return status, lines, peak, cpu


def _gzip_pieces(pieces: Iterator[bytes]) -> bytes:
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    return b"".join([*(packer.compress(piece) for piece in pieces), packer.flush()])


def _log_key(index: int) -> str:
    return f"downloads/2021/01/07/20/55/downloads-2021-01-07T20-55-00-host-{index}-abc.log.gz"


def _zip_bomb(path: Path, size: int) -> None:
    """One member of ``size`` zero bytes (a few MB stored), written a megabyte at a time."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("index.html", "w", force_zip64=True) as member,
    ):
        for _ in range(size >> 20):
            member.write(bytes(1 << 20))


def _zip_of_entries(path: Path, count: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("index.html", b"<p>docs</p>")
        for n in range(count):
            archive.writestr(f"p/{n}.html", b"")


def check_inputs(root: Path) -> list[Result]:
    """Hostile logs through ``linehaul ingest``, hostile bundles through ``docs upload``."""
    root.mkdir(parents=True, exist_ok=True)
    results = []
    cases: list[tuple[str, Callable[[Path], list[str]]]] = []

    def ingest(name: str, pieces: Callable[[], Iterator[bytes]]) -> None:
        def prepare(case: Path) -> list[str]:
            target = case / "logs" / _log_key(0)
            target.parent.mkdir(parents=True)
            target.write_bytes(_gzip_pieces(pieces()))
            return [
                "linehaul",
                "ingest",
                "--logs",
                f"file://{case}/logs",
                "--results",
                f"file://{case}/results",
                "--once",
            ]

        cases.append((f"linehaul ingest: {name}", prepare))

    def upload(name: str, build: Callable[[Path], None]) -> None:
        def prepare(case: Path) -> list[str]:
            build(case / "site.zip")
            return [
                "docs",
                "upload",
                "probe",
                str(case / "site.zip"),
                "--store",
                f"file://{case}/docs",
            ]

        cases.append((f"docs upload: {name}", prepare))

    ingest("one line of 100 MB", lambda: (b"x" * MB for _ in range(100)))
    ingest("3,000,000 short lines", lambda: (b"junk line\n" * 100_000 for _ in range(30)))
    ingest("1 GB of newlines", lambda: (b"\n" * MB for _ in range(1024)))
    upload("zip bomb (4 GB of zeros)", lambda path: _zip_bomb(path, 4 << 30))
    upload("1,000,000 entries", lambda path: _zip_of_entries(path, 1_000_000))
    for name, prepare in cases:
        case = root / name.replace(" ", "_").replace(":", "").replace(",", "")
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir(parents=True)
        argv = prepare(case)
        status, lines, peak, cpu = measured(argv, case)
        ok = (
            status is not None
            and peak < INPUT_RSS
            and len(lines) <= 1
            and not any("Traceback" in line for line in lines)
        )
        detail = (
            f"exit {status}, peak RSS {peak / MB:.0f} MB, CPU {cpu:.1f}s, stderr {lines[-1:]!r}"
        )
        results.append(Result("commands", name, ok, detail[:300]))
        shutil.rmtree(case, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("check", choices=["idle", "second", "hostile", "inputs", "all"])
    parser.add_argument(
        "--only", help="comma-separated rows' names, or substrings of them where none is one"
    )
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--trickle", type=int, default=300)
    parser.add_argument("--busy", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "rehearsal")
    opts = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    only = set(opts.only.split(",")) if opts.only else None
    opts.dir.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    began = time.monotonic()
    with busy_loops(opts.busy):
        if opts.check in ("inputs", "all"):
            for result in check_inputs(opts.dir / "inputs"):
                print(result, flush=True)
                results.append(result)
        if opts.check in ("second", "all"):
            for result in check_second(opts.dir, only):
                print(result, flush=True)
                results.append(result)
        for row in servers(opts.dir, only) if opts.check in ("idle", "hostile", "all") else []:
            try:
                with started(row, opts.dir) as running:
                    checks: list[Callable[[], list[Result]]] = []
                    if opts.check in ("idle", "all"):
                        checks.append(lambda: check_idle(running, opts.idle, opts.trickle))
                    if opts.check in ("hostile", "all"):
                        checks.append(lambda: check_hostile(running))
                    for check in checks:
                        for result in check():
                            print(result, flush=True)
                            results.append(result)
                    tail = running.stderr.read_text(errors="replace").strip().splitlines()
                    if any("Traceback" in line for line in tail):
                        result = Result(
                            row.name, "stderr without tracebacks", False, tail[-1][:200]
                        )
                        print(result, flush=True)
                        results.append(result)
            except RuntimeError as exc:
                result = Result(row.name, "start", False, str(exc)[:300])
                print(result, flush=True)
                results.append(result)
    failed = [r for r in results if not r.ok]
    print(
        f"{len(results)} checks, {len(failed)} failed, {time.monotonic() - began:.0f}s; "
        f"busy loops {opts.busy}; {machine()}"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
