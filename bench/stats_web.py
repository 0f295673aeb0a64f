"""Benchmark: the stats web and the rollups over 50M download rows, 365 days, 5,000 projects.

    .venv/bin/python bench/stats_web.py [--rows 50000000] [--dir /tmp/stats-web-bench]
                                        [--duration 10] [--connections 16] [--publish-runs 2]
                                        [--loads-per-day 24] [--skip api,stats,publish]
                                        [--cases health,recent,...] [--api-runs 1]
                                        [--reference OTHER_CHECKOUT/src] [--tail-loads N]

1. The warehouse is generated directly inside DuckDB with one ``INSERT ... SELECT`` over
   ``range(rows)`` (no NDJSON, no publish: minutes instead of hours), in time order like
   real loads, skewed as real downloads are: projects ``floor(5000 * u^4)`` (the top 1 %
   get about a third of the downloads), versions and countries ``u^3``, Pythons ``u^2``, half
   pip, a fifth uv, 2 % bandersnatch (a mirror), 60 % Linux, a fifth in CI. Then the rollups
   are built from the rows (``linehaul rollup --rebuild``), timed, and laid out as a
   year of daily publishes leaves them (a run per settled day, regrouped by week and by
   month). The file is kept in ``--dir`` and reused by later runs with the same ``--rows``.
2. API with one worker: ``pythonhosted stats-web serve --workers 1`` (granian, as deployed)
   loaded by wrk (Debian's ``wrk``; ``--connections`` connections, one thread) for
   ``--duration`` seconds per case, every request a random project of the 5,000:
   ``recent`` and ``overall`` *warm* (answers cached per data version, the steady state
   between publishes) and *cold* (every answer computed from the rollups: the cost right
   after a publish), and the project page cold. Warm cases go to a server whose cache is
   ``--cache-bytes`` (1 GiB, room for every warm answer), warmed first; cold ones to a
   second server with its cache off (``cache_entries`` 0: the cache is keyed by the
   parameters routes read, so a unique query string no longer makes an answer cold).
   p50/p99 latency and requests/s from wrk, CPU per request from the server's
   ``/proc/PID/stat``. The first case, ``/_health``, is the floor: the service shell's own
   route, no domain code, so its p99 is what the machine's scheduler and the server leave
   any route on a loaded machine. ``--cases`` picks cases, ``--api-runs`` repeats them, and
   ``--reference`` runs another checkout's server beside this one's, alternating case by
   case (before/after within one run). The reference for ``recent``: the same question as
   one GROUP BY over the rows (what stats did before rollups), timed in-process.
   ``--tail-loads N`` first publishes N files of yesterday's rows (``--tail-days-ago``: 1)
   into the warehouse (it changes the file: point ``--dir`` at a copy), so the rollups'
   totals tail overlaps the days ``recent`` and ``overall`` read, their worst case; of
   today's (0), it does not, as after a day's first publish.
   *First visitors* (:func:`first_visitors`): the pages, badges and API answers of the 50
   most downloaded projects asked once each by ``--connections`` clients right after the
   server starts (its cache as empty as a publish leaves it), with the pre-warm off and on.
3. ``pythonhosted stats`` queries through :func:`breakdown` (in-process, the CLI's own
   call; best and median of 5) and one CLI subprocess (Python start-up included).
4. Rollup maintenance on publish, over a realistic sequence: three days of
   ``--loads-per-day`` loads each (result files of about 160,000 rows, one 64 MB publish
   group: ingest's converter over bench/linehaul.py's corpus, moved to the day), from today
   on, into a copy of the warehouse, with rollup maintenance and with it switched off,
   ``--publish-runs`` each, alternating. The first load of the third day settles the first
   day (a full day's rows). Printed: the mean time per load over the third day and over all
   three (the overhead a day of publishes pays), the worst single load, the median overhead
   of the loads that settle nothing, and the cold reader answers (``recent``, ``overall``,
   the project page's queries, ``stats --days 30``; in-process, median over 20 projects)
   with the last two days open, so read from the rows.

The machine is shared: the load average is printed before and after each part.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx

from pythonhosted.linehaul.batch import convert
from pythonhosted.stats_web import data
from pythonhosted.warehouse import rollups
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.stats import Filters, breakdown, query_breakdown
from pythonhosted.web.server import Bind, free_port, wait_for_port

PROJECTS = 5000
_spec = importlib.util.spec_from_file_location("corpus", Path(__file__).with_name("linehaul.py"))
assert _spec is not None and _spec.loader is not None
corpus_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_module)
COLUMNS = """
    TIMESTAMP '{first}' + to_seconds(CAST(i * 365 * 86400 // {rows} AS BIGINT)) AS ts,
    ['US','CN','DE','IN','GB','FR','JP','BR','CA','NL','KR','RU','AU','SG','IE','SE','PL',
     'ES','IT','CH'][1 + CAST(floor(pow(u(i * 7), 3) * 20) AS BIGINT)] AS country,
    'project-' || CAST(floor(pow(u(i), 4) * {projects}) AS INTEGER) AS project,
    ['3.1','3.0','2.2','2.1','2.0','1.2','1.1','1.0']
        [1 + CAST(floor(pow(u(i * 3), 3) * 8) AS BIGINT)] AS version,
    CASE WHEN hash(i * 11) % 50 = 0 THEN 'bandersnatch'
         ELSE ['pip','pip','pip','pip','pip','uv','uv','poetry','pdm','Browser']
              [1 + CAST(hash(i * 5) % 10 AS BIGINT)] END AS installer,
    ['3.12.1','3.11.7','3.10.13','3.13.0','3.9.18','3.8.18']
        [1 + CAST(floor(pow(u(i * 13), 2) * 6) AS BIGINT)] AS python,
    ['Linux','Linux','Linux','Linux','Linux','Linux','Windows','Darwin',NULL,'FreeBSD']
        [1 + CAST(hash(i * 17) % 10 AS BIGINT)] AS system,
    hash(i * 19) % 5 = 0 AS ci
"""
GENERATE = """
INSERT INTO file_downloads
SELECT ts, country, '/p/' || i, project,
    {{'filename': project || '-' || version || '-py3-none-any.whl', 'project': project,
      'version': version, 'type': 'bdist_wheel'}},
    {{'installer': {{'name': installer, 'version': '24.0', 'subcommand': NULL}},
      'python': python, 'implementation': {{'name': 'CPython', 'version': python}},
      'distro': NULL, 'system': {{'name': system, 'release': '6.5'}}, 'cpu': 'x86_64',
      'openssl_version': NULL, 'setuptools_version': NULL, 'rustc_version': NULL,
      'ci': ci}},
    'TLSv1.3', 'TLS_AES_128_GCM_SHA256', NULL
FROM (SELECT i, {columns} FROM range({rows}) t(i))
"""


def create_macros(con: duckdb.DuckDBPyConnection) -> None:
    """``u(x)``: a uniform number in [0, 1) from a hash, so the data is the same every run."""
    con.execute("CREATE OR REPLACE MACRO u(x) AS (hash(x) % 1000003) / 1000003.0")


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def first_day() -> str:
    """The generated year ends yesterday, so 'recent' questions have answers."""
    return (datetime.now(UTC).date() - timedelta(days=365)).isoformat()


def generate(path: Path, rows: int) -> None:
    if path.exists():
        print(f"reusing {path} ({path.stat().st_size / 2**30:.1f} GiB)")
        return
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    DuckDBWarehouse(partial).close()  # the tables, empty
    started = time.perf_counter()
    con = duckdb.connect(str(partial))
    create_macros(con)
    columns = COLUMNS.format(first=first_day(), rows=rows, projects=PROJECTS)
    con.execute(GENERATE.format(columns=columns, rows=rows))
    con.close()
    generated = time.perf_counter() - started
    started = time.perf_counter()
    warehouse = DuckDBWarehouse(partial)
    warehouse.rebuild_rollups()
    warehouse.close()
    rebuilt = time.perf_counter() - started
    started = time.perf_counter()
    lay_out_as_published(partial)
    laid_out = time.perf_counter() - started
    print(f"rollups laid out as a year of daily publishes leaves them in {laid_out:.0f} s")
    partial.rename(path)
    con = duckdb.connect(str(path), read_only=True)
    count = con.execute(f"SELECT count(*) FROM {rollups.ROLLUPS}").fetchone()
    con.close()
    print(
        f"generated {rows:,} rows in {generated:.0f} s; rollups rebuilt in {rebuilt:.0f} s "
        f"({count[0] if count else 0:,} rollup rows); file {path.stat().st_size / 2**30:.1f} GiB"
    )


def lay_out_as_published(path: Path, periods: bool = True) -> None:
    """Store the settled days' rollups as a publish a day leaves them, not as the rebuild
    does (one run sorted by project, where a project's year is in two row groups): each day
    settles alone as a run sorted by project, and each week and month it completes is
    regrouped as one run (:func:`rollups.completed_periods`; ``periods`` False: as before
    that, a run a day, a project's year in a row group of every day)."""
    con = duckdb.connect(str(path))
    settled = rollups.settled_through(con)
    found = con.execute(f"SELECT min(day) FROM {rollups.ROLLUPS}").fetchone()
    if settled is None or found is None or found[0] is None:
        con.close()
        return
    day = found[0]
    while day <= settled:
        rollups.regroup(con, day, day)
        for first, last in (
            rollups.completed_periods(day - timedelta(days=1), day) if periods else []
        ):
            rollups.regroup(con, first, last)
        day += timedelta(days=1)
    con.execute("CHECKPOINT")
    con.close()


WRK_SCRIPT = """
math.randomseed({seed})
request = function()
  local p = "project-" .. math.random(0, {last})
  return wrk.format("GET", (string.gsub("{template}", "PROJECT", p)))
end
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(base: str, template: str, seed: int, args: argparse.Namespace, pid: int) -> str:
    script = WRK_SCRIPT.format(seed=seed, last=PROJECTS - 1, template=template)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    before = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
         "-s", handle.name, base],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    used = cpu_seconds(pid) - before
    os.unlink(handle.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)[1]  # type: ignore[index]
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)[1]  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = f", {errors[1]} non-2xx" if errors else ""
    return (
        f"{rate:8.0f} req/s  p50 {p50:>8}  p99 {p99:>8}  "
        f"{1e6 * used / max(total, 1):6.0f} us CPU/request{bad}"
    )


# The API cases by name (``--cases``). ``health`` is the floor: the service shell's own
# ``/_health``, no domain code, so its tail is the server's and the machine's alone.
CASES = {
    "health": ("/_health (floor)", "/_health", False),
    "recent": ("recent, warm", "/api/packages/PROJECT/recent", False),
    "overall": ("overall, warm", "/api/packages/PROJECT/overall", False),
    "recent-cold": ("recent, cold", "/api/packages/PROJECT/recent", True),
    "overall-cold": ("overall, cold", "/api/packages/PROJECT/overall", True),
    "page-cold": ("project page, cold", "/packages/PROJECT", True),
    "minor-cold": ("python_minor, cold", "/api/packages/PROJECT/python_minor", True),
    "badge": ("badge, warm", "/badge/PROJECT.svg", False),
}


def launch(
    path: Path, src: str | None, settings: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Bind]:
    """``stats-web serve --workers 1`` on the warehouse at ``path``, in a session of its own,
    of this checkout or of the one whose ``src/`` is ``src``, with ``settings``
    (``PYTHONHOSTED_*`` variables; the caller's own are left out): the process and its
    address, not waited for."""
    bind = Bind("127.0.0.1", free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONHOSTED_")}
    env.update(settings)
    env["PYTHONHOSTED_DATA_DIR"] = str(path.parent)
    if src is not None:
        env["PYTHONPATH"] = src
    server = subprocess.Popen(
        [sys.executable, "-m", "pythonhosted", "stats-web", "serve", "--workers", "1",
         "--warehouse", f"duckdb://{path}", "--bind", f"{bind.host}:{bind.port}"],
        env=env, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    return server, bind


def start_server(
    path: Path,
    args: argparse.Namespace,
    src: str | None,
    *,
    cold: bool,
    env: dict[str, str] | None = None,
    warm_up: bool = True,
) -> tuple[Any, str]:
    """``stats-web serve --workers 1`` of this checkout, or of the one whose ``src/`` is
    ``src`` (the reference): for the warm cases, warmed by one pass over every project's
    routes of the warm cases asked for (unless not ``warm_up``); for the ``cold`` ones, with
    its cache off."""
    cases = [] if cold or not warm_up else args.cases.split(",")
    settings = dict(env or {})
    # Room for every warm answer (an 'overall' of a busy project is ~40 KB; the default
    # 64 MB holds about a third of 5,000 projects' answers): the server's RSS is printed.
    settings["PYTHONHOSTED_STATS_WEB__CACHE_BYTES"] = str(args.cache_bytes)
    if cold:
        settings["PYTHONHOSTED_STATS_WEB__CACHE_ENTRIES"] = "0"
    if src is None:  # the cases' own caching (a reference may have no such setting)
        settings.setdefault("PYTHONHOSTED_STATS_WEB__PREWARM_PROJECTS", "0")
        if cold:  # no settled part kept either (a project asked twice would reuse it)
            settings["PYTHONHOSTED_STATS_WEB__PART_CACHE_BYTES"] = "0"
    server, bind = launch(path, src, settings)
    try:
        wait_for_port(bind, timeout=60)
        base = bind.url()
        templates = [t for name, (_, t, cold) in CASES.items() if name in cases and not cold]
        paths = [t.replace("PROJECT", f"project-{n}") for t in templates for n in range(PROJECTS)]
        paths = [path for path in paths if "project-" in path]

        def warm(part: list[str]) -> None:
            with httpx.Client(timeout=60) as client:
                for page in part:
                    client.get(base + page)

        with ThreadPoolExecutor(4) as pool:  # the server computes in threads too
            list(pool.map(warm, [paths[i::4] for i in range(4)]))
    except BaseException:
        server.terminate()
        server.wait(timeout=30)
        raise
    return server, base


def api(path: Path, args: argparse.Namespace) -> None:
    """The cases, ``--api-runs`` rounds (each its own random projects); with
    ``--reference`` each case alternates between the reference's servers and this
    checkout's, all up at once."""
    cold_cases = any(CASES[name][2] for name in args.cases.split(","))
    arms = [("ref", args.reference)] if args.reference else []
    arms.append(("now", None))
    servers: dict[tuple[str, bool], tuple[Any, str]] = {}
    try:
        for arm, src in arms:
            servers[arm, False] = start_server(path, args, src, cold=False)
            if cold_cases:
                servers[arm, True] = start_server(path, args, src, cold=True)
        for run in range(args.api_runs):
            for name in args.cases.split(","):
                label, template, cold = CASES[name]
                for arm, _ in arms:
                    server, base = servers[arm, cold]
                    result = wrk(base, template, 42 + run, args, server.pid)
                    print(f"  {arm:<4}{label:<20} {result}   ({load()})", flush=True)
        for (arm, cold), (server, _) in servers.items():
            status = Path(f"/proc/{server.pid}/status").read_text()
            rss = int(status.split("VmRSS:")[1].split()[0])
            kind = "cold" if cold else "warm"
            print(f"  {arm} {kind} server RSS after the runs: {rss / 1024:.0f} MB")
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)


CROWD_ROUTES = {
    "recent": "/api/packages/PROJECT/recent",
    "page": "/packages/PROJECT",
}


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect_to(bind: Bind) -> Connection | None:
    try:
        return await asyncio.open_connection(bind.host, bind.port)
    except OSError:
        return None


async def one_request(
    connection: Connection | None, path: str, headers: str = ""
) -> tuple[int, float]:
    """One request on its own connection (``headers``: more lines, each ending in CRLF):
    (status, seconds from sending it to the last byte of the answer); status 0 when the
    connection failed."""
    if connection is None:
        return 0, 0.0
    reader, writer = connection
    started = time.perf_counter()
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    try:
        writer.write(request.encode())
        answer = await reader.read()
    except OSError:
        return 0, time.perf_counter() - started
    finally:
        writer.close()
    elapsed = time.perf_counter() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, elapsed


async def _crowd(base: str, paths: list[str]) -> list[tuple[int, float]]:
    """Every path on a connection of its own: all connected first, then all asked at once."""
    bind = Bind.parse(base.removeprefix("http://"))
    connections = await asyncio.gather(*(connect_to(bind) for _ in paths))
    return list(await asyncio.gather(*map(one_request, connections, paths)))


async def _stream(
    base: str, paths: Iterator[str], clients: int, seconds: float
) -> list[tuple[int, float]]:
    """``clients`` clients for ``seconds``, each asking one question after another on a new
    connection, and waiting ``Retry-After`` (2 s) after a 503, as a polite client does."""
    bind = Bind.parse(base.removeprefix("http://"))
    deadline = time.perf_counter() + seconds
    answers: list[tuple[int, float]] = []

    async def client() -> None:
        while time.perf_counter() < deadline:
            answer = await one_request(await connect_to(bind), next(paths))
            answers.append(answer)
            if answer[0] == 503:
                await asyncio.sleep(2)

    await asyncio.gather(*(client() for _ in range(clients)))
    return answers


def _ms(values: list[float], share: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]:.0f} ms"


def crowd(path: Path, args: argparse.Namespace) -> None:
    """``--crowd-clients`` clients at once, each asking a distinct cold question (cache
    off) on a connection of its own, against servers with each ``--crowd-bounds``
    ``max_pending`` (and the ``--reference`` checkout's, which has no bound): how many are
    admitted, their p50/p99, how many are shed and how fast, the server's CPU per
    admitted answer. ``--crowd-runs`` rounds, each on other projects."""
    arms: list[tuple[str, str | None, str | None]] = []
    if args.reference:
        arms.append(("reference", args.reference, None))
    arms += [(f"max_pending={b}", None, b) for b in args.crowd_bounds.split(",")]
    clients = args.crowd_clients
    for route, template in CROWD_ROUTES.items():
        if route not in args.crowd_routes.split(","):
            continue
        for run in range(args.crowd_runs):
            projects = [(run * clients + n) % PROJECTS for n in range(clients)]
            paths = [template.replace("PROJECT", f"project-{n}") for n in projects]
            if clients > PROJECTS:  # distinct all the same: a parameter the route reads
                paths = [
                    f"{p}?mirrors={'true' if i < PROJECTS else 'false'}"
                    for i, p in enumerate(paths)
                ]
            for label, src, bound in arms:
                extra = {"PYTHONHOSTED_STATS_WEB__MAX_PENDING": bound} if bound else {}
                server, base = start_server(path, args, src, cold=True, env=extra)
                try:
                    httpx.get(base + "/api/packages/project-0/recent", timeout=60)  # version read
                    name = f"{route:<6} run {run + 1} {label:<17}"
                    _measure(f"{name} at once", server.pid, _crowd(base, paths))
                    if args.crowd_duration:
                        stream = _stream(base, itertools.cycle(paths), clients, args.crowd_duration)
                        _measure(f"{name} {args.crowd_duration:.0f} s   ", server.pid, stream)
                finally:
                    server.terminate()
                    server.wait(timeout=30)


def _measure(label: str, pid: int, crowd: Coroutine[Any, Any, list[tuple[int, float]]]) -> None:
    before = cpu_seconds(pid)
    started = time.perf_counter()
    answers = asyncio.run(crowd)
    _report(label, answers, time.perf_counter() - started, cpu_seconds(pid) - before)


def _report(label: str, answers: list[tuple[int, float]], wall: float, used: float) -> None:
    ok = [t for status, t in answers if status == 200]
    shed = [t for status, t in answers if status == 503]
    other = len(answers) - len(ok) - len(shed)
    print(
        f"  {label} admitted {len(ok):5d} ({len(ok) / wall:5.0f}/s) p50 {_ms(ok, 0.5):>8} "
        f"p99 {_ms(ok, 0.99):>8} | shed {len(shed):5d} ({100 * len(shed) / len(answers):4.1f} %)"
        f" p99 {_ms(shed, 0.99):>7} | other {other} | {wall:5.1f} s, server CPU {used:5.1f} s, "
        f"{1000 * used / max(len(ok), 1):.1f} ms per admitted ({load()})",
        flush=True,
    )


TOP = 50  # the pre-warm's default: stats_web.prewarm_projects
FIRST_ROUTES = {
    "pages": ["/packages/PROJECT"],
    "badge+api": [
        "/badge/PROJECT.svg",
        "/api/packages/PROJECT/recent",
        "/api/packages/PROJECT/overall",
        "/api/v1/projects/PROJECT/summary",
    ],
}


def first_visitors(path: Path, args: argparse.Namespace) -> None:
    """The first visitors after a publish: a server just started (its cache empty, as each
    publish leaves it), with the pre-warm off and on (its round let finish first: its wall
    time and CPU printed), then ``--connections`` clients asking, on a new connection each,
    every answer the pre-warm makes of the :data:`TOP` most downloaded projects once: their
    pages, then their badges and API answers. ``--first-runs`` rounds."""
    con = duckdb.connect(str(path), read_only=True)
    end = datetime.now(UTC).date() - timedelta(days=1)
    top = [name for name, _ in data.top(con, 30, end, TOP, Filters())]
    con.close()
    for run in range(args.first_runs):
        for label, projects in (("pre-warm off", 0), (f"pre-warm {TOP}", TOP)):
            extra = {"PYTHONHOSTED_STATS_WEB__PREWARM_PROJECTS": str(projects)}
            server, base = start_server(path, args, None, cold=False, env=extra, warm_up=False)
            try:
                if projects:
                    started, before = time.perf_counter(), cpu_seconds(server.pid)
                    made = _prewarmed(base, 5 * projects)
                    print(
                        f"  run {run + 1} pre-warm round: {made} answers in "
                        f"{time.perf_counter() - started:.1f} s, server CPU "
                        f"{cpu_seconds(server.pid) - before:.2f} s ({load()})",
                        flush=True,
                    )
                for routes, templates in FIRST_ROUTES.items():
                    paths = [t.replace("PROJECT", name) for t in templates for name in top]
                    first = _first(base, paths, args.connections)
                    _measure(f"run {run + 1} {label:<12} {routes:<9}", server.pid, first)
            finally:
                server.terminate()
                server.wait(timeout=30)


def _prewarmed(base: str, expected: int, timeout: float = 300.0) -> int:
    """The answers the server's pre-warm made, once it made ``expected`` or stopped."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        text = httpx.get(base + "/metrics", timeout=60).text
        found = re.search(r"^stats_web_answers_prewarmed_total (\S+)$", text, re.M)
        made = int(float(found[1])) if found else 0
        if made >= expected or (made == last and made and time.monotonic() - since > 5):
            return made
        if made != last:
            last, since = made, time.monotonic()
        time.sleep(0.5)
    return last


async def _first(base: str, paths: list[str], clients: int) -> list[tuple[int, float]]:
    """``clients`` clients at once, each asking the next path not asked yet on a new
    connection, until every path was asked once."""
    bind = Bind.parse(base.removeprefix("http://"))
    queue = iter(paths)
    answers: list[tuple[int, float]] = []

    async def client() -> None:
        for path in queue:
            answers.append(await one_request(await connect_to(bind), path))

    await asyncio.gather(*(client() for _ in range(clients)))
    return answers


def timed(call: Callable[[], object], runs: int = 5) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def stats_queries(path: Path) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    start = yesterday - timedelta(days=29)
    con = duckdb.connect(str(path), read_only=True)
    popular = con.execute(
        f"SELECT project FROM {rollups.ROLLUPS} WHERE dimension = '' GROUP BY project "
        "ORDER BY sum(downloads) DESC LIMIT 1"
    ).fetchone()
    con.close()
    assert popular is not None
    top = popular[0]
    questions: list[tuple[str, Callable[[], object]]] = [
        (f"{top} --days 30", lambda: breakdown(path, top, [], start, yesterday)),
        (f"{top} --days 30 --by installer",
         lambda: breakdown(path, top, ["installer"], start, yesterday)),
        ("project-4000 --all-time --by month",
         lambda: breakdown(path, "project-4000", ["month"], None, yesterday)),
        (f"{top} --days 30 --by installer-version (rows)",
         lambda: breakdown(path, top, ["installer-version"], start, yesterday)),
        ("--top 10 --days 30",
         lambda: breakdown(path, None, ["project"], start, yesterday, 10, Filters())),
    ]  # fmt: skip
    for label, call in questions:
        best, median = timed(call)
        print(f"  stats {label:<48} best {1000 * best:7.1f} ms  median {1000 * median:7.1f} ms")

    def reference() -> object:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return con.execute(
                "SELECT count(*) FROM file_downloads WHERE project = ? AND timestamp >= ? "
                "AND timestamp < ? AND details.installer.name <> 'bandersnatch'",
                [top, start, yesterday + timedelta(days=1)],
            ).fetchall()
        finally:
            con.close()

    best, median = timed(reference)
    ours, _ = timed(lambda: breakdown(path, top, [], start, yesterday))
    print(
        f"  reference: the same --days 30 total as GROUP BY over the rows: best "
        f"{1000 * best:.1f} ms, median {1000 * median:.1f} ms ({best / ours:.0f}x the rollups)"
    )
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pythonhosted", "stats", top, "--days", "30", "--by",
         "installer", "--warehouse", f"duckdb://{path}"],
        check=True, capture_output=True,
    )  # fmt: skip
    print(f"  one CLI run (process start-up included): {time.perf_counter() - started:.2f} s")


def load_days_ago(path: Path, loads: int, rows: int, days_ago: int) -> None:
    """``loads`` publishes of ``rows`` rows of ``days_ago`` days ago into the warehouse
    (``--tail-loads``): the latest hours' rows, which the rollups' totals tail may hold. Of
    yesterday (1), they overlap the days ``recent`` and ``overall`` read (as after a late
    batch of yesterday's rows); of today (0), they do not (a day's publishes after its
    first)."""
    day = (datetime.now(UTC).date() - timedelta(days=days_ago)).isoformat().encode()
    contents = result_files(4, rows)
    warehouse = DuckDBWarehouse(path)
    try:
        for n in range(loads):
            content = contents[n % len(contents)].replace(b"DAY", day)
            warehouse.load("file_downloads", [(f"tail-{time.time_ns()}.json", content)])
    finally:
        warehouse.close()


def result_files(count: int, rows: int) -> list[bytes]:
    """``count`` result files as ingest writes them (its converter, over bench/linehaul.py's
    corpus of real-shaped user agents: full details), each at most ``rows`` rows (about
    160,000 when 0) of one day, ``DAY`` standing for its date."""
    contents = []
    for n in range(count):
        text = corpus_module.corpus(180_000, n)
        data = convert(gzip.compress(("\n".join(text) + "\n").encode(), 1)).downloads
        day = re.search(rb'"timestamp":"(\d{4}-\d{2}-\d{2})', data)
        assert day is not None
        if rows:
            data = b"".join(data.splitlines(keepends=True)[:rows])
        contents.append(data.replace(day[1], b"DAY"))
    return contents


def reader_queries(path: Path, end: date) -> dict[str, tuple[float, float]]:
    """Cold answers (in-process, one at a time), median and highest ms over 20 projects: the API's
    ``recent`` and ``overall``, the project page's summary and breakdowns, the CLI's
    ``--days 30``, up to ``end``."""
    projects = [f"project-{n}" for n in (0, 1, 2, 5, 10, 30, 100, 300, 1000, 1999)] * 2
    questions: dict[str, Callable[[duckdb.DuckDBPyConnection, str], object]] = {
        "recent": lambda con, p: data.recent(con, p, end, Filters()),
        "overall": lambda con, p: data.overall(con, p, None, end),
        "project page (summary + breakdowns)": lambda con, p: (
            data.summary(con, p, end, Filters()),
            data.breakdowns(
                con, p, ["", *rollups.DIMENSIONS], "day",
                end - timedelta(days=29), end, Filters(), 5, 100,
            ),
        ),
        "stats --days 30": lambda con, p: query_breakdown(
            con, p, [], end - timedelta(days=29), end
        ),
    }  # fmt: skip
    out = {}
    con = duckdb.connect(str(path), read_only=True)
    try:
        for label, ask in questions.items():
            times = []
            for project in projects:
                started = time.perf_counter()
                ask(con, project)
                times.append(time.perf_counter() - started)
            out[label] = (1000 * statistics.median(times), 1000 * max(times))
    finally:
        con.close()
    return out


@dataclass
class PublishRun:
    """One run of :func:`publish_sequence`."""

    wall: list[float]  # per load, seconds
    cpu: list[float]
    readers: dict[str, tuple[float, float]]  # cold answers, median and highest ms
    rows: int  # per load


def publish_sequence(
    path: Path, args: argparse.Namespace, contents: list[bytes], maintain: bool
) -> PublishRun:
    """Three days of ``--loads-per-day`` loads each, from today on, into a copy of the
    warehouse (rollup maintenance on or off): the first load of the third day settles the
    first, whose rows are a full day's. Per load wall and CPU seconds, then the cold reader
    answers with the last two days open."""
    scratch = Path(args.dir) / "publish-copy.duckdb"
    shutil.copyfile(path, scratch)
    DuckDBWarehouse(scratch).close()  # a rollup rebuild, when one is due, is not timed
    original = rollups.marks
    if not maintain:  # no marks: the load is its plain INSERT, nothing maintained
        rollups.marks = lambda con: None  # type: ignore[assignment,return-value]
    today = datetime.now(UTC).date()
    wall: list[float] = []
    cpu: list[float] = []
    try:
        for day in range(3):
            stamp = (today + timedelta(days=day)).isoformat().encode()
            for n in range(args.loads_per_day):
                content = contents[(day * args.loads_per_day + n) % len(contents)]
                warehouse = DuckDBWarehouse(scratch)
                cpu_before = time.process_time()
                started = time.perf_counter()
                warehouse.load(
                    "file_downloads",
                    [(f"bench-{day}-{n}.json", content.replace(b"DAY", stamp))],
                )
                wall.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_before)
                warehouse.close()
    finally:
        rollups.marks = original
    # The last day loaded is open, as yesterday is in production.
    readers = reader_queries(scratch, today + timedelta(days=2)) if maintain else {}
    scratch.unlink()
    return PublishRun(wall, cpu, readers, contents[0].count(b"\n"))


def publish_overhead(path: Path, args: argparse.Namespace) -> None:
    """:func:`publish_sequence` with rollup maintenance and without, ``--publish-runs``
    times each, alternating."""
    loads = args.loads_per_day
    contents = result_files(args.distinct_files, args.rows_per_load)
    results: dict[bool, list[PublishRun]] = {True: [], False: []}
    for run in range(args.publish_runs):
        for maintain in (run % 2 == 0, run % 2 == 1):
            results[maintain].append(publish_sequence(path, args, contents, maintain))
            print(f"    run {run + 1}, maintenance {'on' if maintain else 'off'} ({load()})")

    def per_load(maintain: bool, kind: str) -> list[float]:
        """Each load's median over the runs."""
        series = [getattr(result, kind) for result in results[maintain]]
        return [statistics.median(values) for values in zip(*series, strict=True)]

    rows = results[True][0].rows
    print(f"  {loads} loads a day of {rows:,} rows each; medians of {args.publish_runs} runs")
    for kind in ("wall", "cpu"):
        on, off = per_load(True, kind), per_load(False, kind)
        for label, part in (("third day (settles a day)", slice(2 * loads, 3 * loads)),
                            ("all three days", slice(0, 3 * loads))):  # fmt: skip
            mean_on, mean_off = statistics.mean(on[part]), statistics.mean(off[part])
            print(
                f"  {kind:<4} {label:<26} mean per load {mean_on:.3f} s with, {mean_off:.3f} s "
                f"without: {100 * (mean_on / mean_off - 1):+.1f} %"
            )
        settling = 2 * loads  # the first load of the third day
        print(
            f"  {kind:<4} the load that settles a day: {on[settling]:.3f} s with, "
            f"{off[settling]:.3f} s without: {100 * (on[settling] / off[settling] - 1):+.1f} %"
        )
        others = [on[i] / off[i] - 1 for i in range(len(on)) if i != settling]
        print(
            f"  {kind:<4} the other loads: overhead median {100 * statistics.median(others):+.1f} "
            f"%, highest {100 * max(others):+.1f} %"
        )
    for label in results[True][0].readers:
        medians = [result.readers[label][0] for result in results[True]]
        highest = max(result.readers[label][1] for result in results[True])
        print(
            f"  cold {label:<38} median {statistics.median(medians):6.1f} ms, "
            f"highest {highest:6.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--dir", default="/tmp/stats-web-bench")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--publish-runs", type=int, default=2)
    parser.add_argument("--loads-per-day", type=int, default=24)
    parser.add_argument("--distinct-files", type=int, default=4)
    parser.add_argument("--rows-per-load", type=int, default=0, help="0: a 64 MB group's")
    parser.add_argument(
        "--tail-loads",
        type=int,
        default=0,
        help="loads of --tail-days-ago's rows (--rows-per-load, 5,700 when 0) before the API part",
    )
    parser.add_argument("--tail-days-ago", type=int, default=1, help="the day of --tail-loads")
    parser.add_argument("--cache-bytes", type=int, default=1 << 30)
    parser.add_argument(
        "--cases",
        default="health,recent,overall,recent-cold,overall-cold,page-cold,badge",
        help="comma-separated API cases: " + ", ".join(CASES),
    )
    parser.add_argument("--api-runs", type=int, default=1, help="rounds of the API cases")
    parser.add_argument(
        "--reference", help="another checkout's src/ directory: its server alternates with ours"
    )
    parser.add_argument("--skip", default="", help="comma-separated: api,crowd,first,stats,publish")
    parser.add_argument("--crowd-clients", type=int, default=2000)
    parser.add_argument("--crowd-bounds", default="8,32,128", help="max_pending of each arm")
    parser.add_argument("--crowd-routes", default="recent,page", help=", ".join(CROWD_ROUTES))
    parser.add_argument("--crowd-runs", type=int, default=1)
    parser.add_argument("--first-runs", type=int, default=2, help="rounds of 'first'")
    parser.add_argument(
        "--crowd-duration", type=float, default=15.0, help="then as many clients for N s; 0: not"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None and "api" not in args.skip:
        sys.exit("wrk is needed: apt-get install -y wrk")
    skip = set(args.skip.split(","))
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    path = Path(args.dir) / f"warehouse-{args.rows}-published.duckdb"
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {load()}")
    generate(path, args.rows)
    if args.tail_loads:
        print(
            f"{args.tail_loads} loads of rows {args.tail_days_ago} days ago into {path} ({load()})"
        )
        load_days_ago(path, args.tail_loads, args.rows_per_load or 5700, args.tail_days_ago)
    if "api" not in skip:
        print(f"API, one worker, wrk -t1 -c{args.connections} -d{args.duration}s ({load()}):")
        api(path, args)
    if "crowd" not in skip:
        print(f"a crowd of {args.crowd_clients} cold questions at once ({load()}):")
        crowd(path, args)
    if "first" not in skip:
        print(f"the first visitors after a publish, {args.connections} at once ({load()}):")
        first_visitors(path, args)
    if "stats" not in skip:
        print(f"stats queries ({load()}):")
        stats_queries(path)
    if "publish" not in skip:
        print(f"rollup maintenance on publish ({load()}):")
        publish_overhead(path, args)
    print(load())


if __name__ == "__main__":
    main()
