"""Probe: every service when its resources run out (a full disk, a low open-file limit).

Needs a mount namespace of its own (root in a container, or ``unshare -Urm``) for the disks:

    unshare -m .venv/bin/python bench/probe_full.py [--parts files,upload,linehaul,docs,nofile]
        [--downloads 2000] [--clients 1000] [--nofile 256]

Each disk part mounts small tmpfs filesystems (1-8 MB, visible only in this namespace), fills
them while or before the service writes, frees them and checks that nothing was lost or
counted twice. Every server is a real process in its own process group, on loopback ports,
stopped by its id. Prints one line per check (PASS or FAIL with its numbers) and what the
processes said on stderr (line count, tracebacks).

- ``files``: the edge's download-log spool and its ``logs`` store on one full tmpfs while
  ``--downloads`` downloads happen; then space is freed: every download must arrive in the
  logs store as one ``download`` and one ``served`` line (none twice), before and after a stop.
- ``upload``: ``files upload`` of releases to a primary store (and its catalog) whose disk
  fills at every point of the write (free space stepped from nothing to the whole file): one
  line and exit 1 each time, no object or catalog entry for a file not stored, ``index serve``
  answering the project's page with exactly the files that download; once the space is back
  the same upload stores it, listed once.
- ``linehaul``: ingest with its results store full, then publish with the DuckDB warehouse
  full at every point of a load: one line and exit 1, no traceback; once the space is back,
  rows in the warehouse == lines in the log objects and ``pythonhosted stats`` agrees.
- ``docs``: ``docs upload`` of a new site to a full docs store, stepped as ``upload``: one line
  and exit 1, ``conveyor serve`` still serving the previous site whole; once the space is
  back the new one is served whole.
- ``nofile``: every server (as ``bench/rehearsal.py`` starts them) with its open-file limit
  (soft and hard) at ``--nofile`` under ``--clients`` concurrent clients of its routes: its
  ``/_health`` answered during and after, each client answered or refused, no traceback loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).parent))
from loadgen import machine
from pythonhosted.samples import build_wheel
from pythonhosted.storage import open_store
from pythonhosted.web.server import free_port
from rehearsal import Server, answers, servers, stop
from support.edge import SAMPLES, seed
from support.linehaul_data import seed_unique

PYTHON = [sys.executable, "-m", "pythonhosted"]
KB = 1 << 10
MB = 1 << 20
VERDICTS: list[bool] = []


def check(name: str, ok: bool, detail: str) -> None:
    VERDICTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


# --- disks ------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes at ``path`` (this mount namespace only), unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """A file taking every byte of ``disk`` but about ``leave``; delete it to free them."""
    filler = disk / f".filler-{time.monotonic_ns()}"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    if leave:
        with filler.open("r+b") as out:
            out.truncate(max(0, filler.stat().st_size - leave))
    return filler


def free(disk: Path) -> None:
    for filler in disk.glob(".filler-*"):
        filler.unlink()


def files_under(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".filler" not in p.name
    )


# --- processes --------------------------------------------------------------------------


def run(argv: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, list[str]]:
    done = subprocess.run(
        [*PYTHON, *argv], env=env, capture_output=True, timeout=timeout, check=False
    )
    return done.returncode, done.stderr.decode(errors="replace").splitlines()


def said(lines: list[str]) -> str:
    tracebacks = sum("Traceback" in line for line in lines)
    first = lines[-1][:200] if lines else ""
    return f"{len(lines)} stderr lines, {tracebacks} tracebacks, last: {first!r}"


@contextlib.contextmanager
def serving(
    argv: list[str], env: dict[str, str], port: int, stderr: Path, nofile: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    def limited() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [*PYTHON, *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            preexec_fn=limited,
        )
    try:
        deadline = time.monotonic() + 90
        while not answers(port, "/_health"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[:2]} did not start: {stderr.read_text()[-2000:]}")
            time.sleep(0.2)
        yield process
    finally:
        stop(process)


def base_env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONHOSTED_DATA_DIR": str(root / "data")}


# --- files: the download log ------------------------------------------------------------


def log_lines(logs: Path) -> list[str]:
    found: list[str] = []
    for path in sorted((logs / "downloads").rglob("*.log.gz")):
        found += gzip.decompress(path.read_bytes()).decode().splitlines()
    return found


async def download(url: str, count: int, path: str = SAMPLES["wheel"].path) -> Counter[int]:
    """``count`` GETs of ``path`` (20 at a time), each its own URL: their statuses (0: none)."""
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        turns = asyncio.Semaphore(20)

        async def one(number: int) -> int:
            async with turns:
                try:
                    return (await client.get(f"{path}?n={number}")).status_code
                except httpx.HTTPError:
                    return 0

        return Counter(await asyncio.gather(*(one(n) for n in range(count))))


def counted(logs: Path) -> tuple[int, int]:
    """(served, download) lines in the logs store."""
    found = log_lines(logs)
    served = sum(line.startswith("served|") for line in found)
    return served, sum(line.startswith("download|") for line in found)


def part_files(root: Path, downloads: int) -> None:
    primary = f"file://{root}/primary"
    seed(primary)
    for where in ("logs", "spool", "both"):
        files_where(root / where, primary, downloads, where)


def files_where(root: Path, primary: str, downloads: int, where: str) -> None:
    """The download log with its logs store, its spool or both on a full disk."""
    with tmpfs(root / "full-log", 2 * MB) as disk:
        logs = (disk if where in ("logs", "both") else root) / "logs"
        spool = (disk if where in ("spool", "both") else root) / "spool"
        fill(disk)
        port = free_port()
        env = {
            **base_env(root),
            "PYTHONHOSTED_FILES__LOG_SPOOL_DIR": str(spool),
            "PYTHONHOSTED_FILES__LOG_PERIOD": "1",
            "PYTHONHOSTED_FILES__LOG_SPOOL_SYNC_INTERVAL": "0.2",
        }
        argv = ["files", "serve", "--primary", primary, "--logs", f"file://{logs}"]
        argv += ["--bind", f"127.0.0.1:{port}"]
        stderr = root / "files.err"
        with serving(argv, env, port, stderr) as process:
            statuses = asyncio.run(download(f"http://127.0.0.1:{port}", downloads))
            time.sleep(3)  # a few shipping periods on the full disk
            while_full = counted(logs)[0] if logs.exists() else 0
            health = answers(port, "/_health")
            free(disk)
            deadline = time.monotonic() + 30  # the edge ships what it holds by itself
            while counted(logs)[0] < downloads and time.monotonic() < deadline:
                time.sleep(0.5)
            before_stop = counted(logs)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            dropped = [
                line for line in metrics.splitlines() if line.startswith("files_log_lines_dropped")
            ]
        after_stop = counted(logs)
        lines = stderr.read_text().splitlines()
        check(
            f"files: download log, {where} on a full disk",
            statuses == Counter({200: downloads})
            and health
            and before_stop == after_stop == (downloads, downloads),
            f"answers {dict(statuses)}, served lines while full {while_full}, "
            f"after freeing (served, download) {before_stop}, after the stop "
            f"{after_stop}, wanted {downloads} each; exit {process.returncode}; {dropped}; "
            f"{said(lines)}",
        )


# --- upload: files upload and the catalog, index serve ----------------------------------


def simple_files(port: int, project: str, wanted: list[str] | None = None) -> list[str]:
    """The filenames the index lists for ``project``; with ``wanted``, asked again (up to
    30 s: the index learns of an upload at its next look at the catalog) until it is that."""
    deadline = time.monotonic() + 30
    while (listed := _simple_files(port, project)) != wanted and wanted is not None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return listed


def _simple_files(port: int, project: str) -> list[str]:
    answer = httpx.get(
        f"http://127.0.0.1:{port}/simple/{project}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        timeout=30,
    )
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    return sorted(item["filename"] for item in answer.json()["files"])


def part_upload(root: Path) -> None:
    """A release uploaded while the primary's disk has ``leave`` bytes free, ``leave`` stepped
    from nothing past the release's size: each failure must leave the store as it was."""
    project = "probe-full"
    dist = root / "dists"
    dist.mkdir()
    wheels = []
    for number in range(12):
        filename, data = build_wheel(
            project, f"1.{number}", module_source="DATA = " + repr(os.urandom(30_000).hex())
        )
        (dist / filename).write_bytes(data)
        wheels.append(dist / filename)
    size = wheels[0].stat().st_size
    with tmpfs(root / "full-primary", 4 * MB) as disk:
        primary = f"file://{disk}/primary"
        env = base_env(root)
        rc, lines = run(["files", "upload", "--store", primary, str(wheels[0])], env)
        check("upload: the first release on free space", rc == 0, f"exit {rc}; {said(lines)}")
        port = free_port()
        argv = ["index", "serve", "--primary", primary, "--bind", f"127.0.0.1:{port}"]
        with serving(argv, env, port, root / "index.err"):
            stored = [wheels[0].name]
            steps = [0, 1 * KB, 4 * KB, 16 * KB, size // 2, size, size + 4 * KB, size + 16 * KB]
            for wheel, leave in zip(wheels[1:], steps, strict=False):
                before = files_under(disk)
                fill(disk, leave)
                rc, lines = run(["files", "upload", "--store", primary, str(wheel)], env)
                after = files_under(disk)
                if rc == 0:
                    stored.append(wheel.name)
                listed = simple_files(port, project, sorted(stored))
                health = answers(port, "/_health")
                left = [f for f in after if f not in before]
                whole = all(
                    (disk / f).read_bytes() == wheel.read_bytes()
                    for f in left
                    if f.endswith(".whl")
                )
                ok = (
                    (rc == 0 or (rc == 1 and len(lines) == 1))
                    and listed == sorted(stored)
                    and health
                    and whole
                )
                check(
                    f"upload: {leave} bytes free",
                    ok,
                    f"exit {rc}; listed {len(listed)} of {len(stored)} stored; left unlisted "
                    f"{[Path(f).name for f in left] if rc else []} "
                    f"({'whole' if whole else 'PART-WRITTEN'}); {said(lines)}",
                )
                free(disk)
                if rc != 0:
                    rc, lines = run(["files", "upload", "--store", primary, str(wheel)], env)
                    stored.append(wheel.name)
                    listed = simple_files(port, project, sorted(stored))
                    check(
                        f"upload: again after {leave} bytes free, space back",
                        rc == 0 and listed == sorted(stored),
                        f"exit {rc}; listed {len(listed)} of {len(stored)}; {said(lines)}",
                    )
        errors = (root / "index.err").read_text().splitlines()
        check(
            "upload: index serve beside",
            not any("Traceback" in line for line in errors),
            said(errors),
        )


# --- linehaul: ingest and publish -------------------------------------------------------


def part_linehaul(root: Path) -> None:
    logs_dir = root / "lh-logs"
    total = seed_unique(open_store(f"file://{logs_dir}"), objects=16, lines=300)
    env = base_env(root)
    with tmpfs(root / "full-results", 8 * MB) as results_disk:
        results = f"file://{results_disk}/results"
        for leave in (0, 64 * KB, 512 * KB):
            fill(results_disk, leave)
            rc, lines = run(
                [
                    "linehaul",
                    "ingest",
                    "--once",
                    "--logs",
                    f"file://{logs_dir}",
                    "--results",
                    results,
                ],
                env,
            )
            check(
                f"linehaul: ingest with {leave} bytes free for results",
                rc == 1 and not any("Traceback" in line for line in lines),
                f"exit {rc}; {said(lines)}",
            )
            free(results_disk)
        rc, lines = run(
            ["linehaul", "ingest", "--once", "--logs", f"file://{logs_dir}", "--results", results],
            env,
        )
        check("linehaul: ingest once space is back", rc == 0, f"exit {rc}; {said(lines)}")
        with tmpfs(root / "full-warehouse", 8 * MB) as disk:
            warehouse = f"duckdb://{disk}/warehouse.duckdb"
            loaded = 0
            for leave in (0, 256 * KB, 1 * MB, 2 * MB, 3 * MB, 4 * MB):
                fill(disk, leave)
                rc, lines = run(
                    [
                        "linehaul",
                        "publish",
                        "--once",
                        "--results",
                        results,
                        "--warehouse",
                        warehouse,
                    ],
                    env,
                )
                check(
                    f"linehaul: publish with {leave} bytes free for the warehouse",
                    rc in (0, 1) and not any("Traceback" in line for line in lines),
                    f"exit {rc}; {said(lines)}",
                )
                free(disk)
                rows = warehouse_rows(env, warehouse) if (disk / "warehouse.duckdb").exists() else 0
                loaded += loaded_rows(lines)
                check(
                    f"linehaul: the warehouse after {leave} bytes free",
                    rows == loaded,
                    f"{rows} rows, {loaded} loaded so far of {total}",
                )
            rc, lines = run(
                ["linehaul", "publish", "--once", "--results", results, "--warehouse", warehouse],
                env,
            )
            rows = warehouse_rows(env, warehouse)
            check(
                "linehaul: publish once space is back",
                rc == 0 and rows == total,
                f"exit {rc}; {rows} rows of {total} lines; {said(lines)}",
            )


def part_linehaul_serve(root: Path) -> None:
    """``linehaul serve`` (its ingest and publish loops) with its results store on a full
    disk, then, once that has space, its warehouse: /_health says why each time, and once
    space is back it catches up by itself, every line loaded once."""
    logs_dir = root / "lh-logs"
    total = seed_unique(open_store(f"file://{logs_dir}"), objects=16, lines=300)
    env = {
        **base_env(root),
        "PYTHONHOSTED_LINEHAUL__INGEST_INTERVAL": "1",
        "PYTHONHOSTED_LINEHAUL__PUBLISH_INTERVAL": "2",
    }
    with tmpfs(root / "results", 8 * MB) as results, tmpfs(root / "warehouse", 8 * MB) as disk:
        warehouse = f"duckdb://{disk}/warehouse.duckdb"
        fill(results)
        fill(disk)
        port = free_port()
        argv = ["linehaul", "serve", "--logs", f"file://{logs_dir}"]
        argv += ["--results", f"file://{results}/results", "--warehouse", warehouse]
        argv += ["--bind", f"127.0.0.1:{port}"]
        stderr = root / "linehaul.err"
        health = f"http://127.0.0.1:{port}/_health"

        def until(wanted: Callable[[httpx.Response], bool], within: float = 60) -> httpx.Response:
            deadline = time.monotonic() + within
            while not wanted(answer := httpx.get(health, timeout=10)):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            return answer

        with serving(argv, env, port, stderr) as process:
            ingest_full = until(lambda answer: "ingest pass failed" in answer.text)
            free(results)
            publish_full = until(
                lambda answer: (
                    "ingest pass failed" not in answer.text and "publish pass failed" in answer.text
                )
            )
            free(disk)
            back = until(lambda answer: answer.status_code == 200, 90)
            time.sleep(6)  # a publish pass after the health came back
        rows = warehouse_rows(env, warehouse)
        lines = stderr.read_text().splitlines()
        check(
            "linehaul serve: results, then the warehouse on a full disk",
            (ingest_full.status_code, publish_full.status_code, back.status_code) == (503, 503, 200)
            and rows == total,
            f"health with results full {ingest_full.status_code} {ingest_full.text[:60]!r}, "
            f"with the warehouse full {publish_full.status_code} {publish_full.text[:60]!r}, "
            f"once space is back {back.status_code} {back.text[:40]!r}; {rows} rows of "
            f"{total} lines; exit {process.returncode}; {said(lines)}",
        )


def loaded_rows(lines: list[str]) -> int:
    """The rows ``linehaul publish`` says it loaded (its summary line)."""
    for line in lines:
        if line.startswith("linehaul publish:"):
            return int(line.split(",")[1].split()[0])
    return 0


def warehouse_rows(env: dict[str, str], warehouse: str) -> int | None:
    done = subprocess.run(
        [*PYTHON, "stats", "demo", "--all-time", "--format", "json", "--warehouse", warehouse],
        env=env,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"  stats: exit {done.returncode}: {done.stderr.decode()[-300:]}")
        return None
    total: int = json.loads(done.stdout)["total"]
    return total


# --- docs: docs upload and conveyor serve -----------------------------------------------


def site(root: Path, name: str, pages: int, size: int) -> Path:
    folder = root / name
    folder.mkdir()
    for page in range(pages):
        (folder / f"page{page}.html").write_text(f"<p>{name} {page}</p>" + os.urandom(size).hex())
    (folder / "index.html").write_text(f"<h1>{name}</h1>")
    return folder


def served_site(port: int, folder: Path) -> bool:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for page in folder.iterdir():
            answer = client.get(f"/probe/{page.name}")
            if answer.status_code != 200 or answer.content != page.read_bytes():
                return False
    return True


def part_docs(root: Path) -> None:
    # replaced sites go at once (their default grace, 600 s, would fill the small disk)
    env = {**base_env(root), "PYTHONHOSTED_CONVEYOR__DOCS_KEEP_REPLACED": "0"}
    sites = [site(root, f"site{n}", pages=40, size=8 * KB) for n in range(8)]
    with tmpfs(root / "full-docs", 4 * MB) as disk:
        store = f"file://{disk}/docs"
        rc, lines = run(["docs", "upload", "probe", str(sites[0]), "--store", store], env)
        check("docs: the first site on free space", rc == 0, f"exit {rc}; {said(lines)}")
        port = free_port()
        argv = ["conveyor", "serve", "--docs", store, "--bind", f"127.0.0.1:{port}"]
        with serving(argv, env, port, root / "conveyor.err"):
            current = sites[0]
            for new, leave in zip(
                sites[1:], (0, 16 * KB, 128 * KB, 400 * KB, 700 * KB), strict=False
            ):
                fill(disk, leave)
                rc, lines = run(["docs", "upload", "probe", str(new), "--store", store], env)
                if rc == 0:
                    current = new
                whole = served_site(port, current)
                check(
                    f"docs: upload with {leave} bytes free",
                    (rc == 0 or (rc == 1 and len(lines) == 1)) and whole,
                    f"exit {rc}; {'the served site whole' if whole else 'SITE NOT WHOLE'}; "
                    f"{said(lines)}",
                )
                free(disk)
                if rc != 0:
                    rc, lines = run(["docs", "upload", "probe", str(new), "--store", store], env)
                    whole = rc == 0 and served_site(port, new)
                    current = new if rc == 0 else current
                    check(
                        f"docs: again after {leave} bytes free, space back",
                        whole,
                        f"exit {rc}; {said(lines)}",
                    )
            leftovers = len(files_under(disk))
        errors = (root / "conveyor.err").read_text().splitlines()
        check(
            "docs: conveyor serve beside",
            not any("Traceback" in line for line in errors),
            f"{leftovers} files in the store; {said(errors)}",
        )


# --- serve: every service on one data dir that fills -----------------------------------


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def part_serve(root: Path, downloads: int) -> None:
    """``serve`` with its whole data dir (stores, spool, warehouse, camo's cache) on a 32 MB
    disk that fills halfway through ``downloads`` downloads: every service keeps answering,
    and once space is back every download reaches the warehouse once, by itself."""
    ports = {service: free_port() for service in ("files", "docs", "camo", "linehaul", "stats")}
    setting = {"files": "FILES", "docs": "CONVEYOR", "camo": "CAMO", "linehaul": "LINEHAUL"}
    setting["stats"] = "STATS_WEB"
    env = {
        **base_env(root),
        **{f"PYTHONHOSTED_{setting[s]}__BIND": f"127.0.0.1:{p}" for s, p in ports.items()},
        "PYTHONHOSTED_FILES__LOG_PERIOD": "1",
        "PYTHONHOSTED_LINEHAUL__INGEST_INTERVAL": "1",
        "PYTHONHOSTED_LINEHAUL__PUBLISH_INTERVAL": "2",
    }
    with tmpfs(root / "data", 32 * MB) as data:
        stderr = root / "serve.err"
        with serving(["serve", "--data-dir", str(data)], env, ports["files"], stderr) as process:
            files = f"http://127.0.0.1:{ports['files']}"
            page = httpx.get(
                f"{files}/simple/hello-pythonhosted/",
                headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                timeout=30,
            ).json()
            wheel = next(f["url"] for f in page["files"] if f["filename"].endswith(".whl"))
            path = "/" + wheel.split("/", 3)[3] if wheel.startswith("http") else wheel
            got = asyncio.run(download(files, downloads // 2, path))
            fill(data)
            got += asyncio.run(download(files, downloads - downloads // 2, path))
            time.sleep(5)  # a few passes of every job on the full disk
            during = {s: answers(p, "/_health", within=5) for s, p in ports.items()}
            free(data)
            freed = time.strftime("%H:%M:%S")
            deadline = time.monotonic() + 90
            while metric(ports["linehaul"], "linehaul_publish_rows_total") < downloads:
                if time.monotonic() > deadline:
                    break
                time.sleep(1)
            loaded = metric(ports["linehaul"], "linehaul_publish_rows_total")
            after = {s: answers(p, "/_health", within=5) for s, p in ports.items()}
        today = time.strftime("%Y-%m-%d", time.gmtime())
        query = ["stats", "hello-pythonhosted", "--start", today, "--end", today]
        query += ["--format", "json", "--warehouse", f"duckdb://{data}/warehouse.duckdb"]
        done = subprocess.run(
            [*PYTHON, *query],
            env=env,
            capture_output=True,
            check=False,
        )
        counted_rows = json.loads(done.stdout)["total"] if done.returncode == 0 else None
        lines = stderr.read_text().splitlines()
        check(
            "serve: its data dir on a disk that fills",
            got == Counter({200: downloads})
            and all(during.values())
            and all(after.values())
            and counted_rows == downloads
            and not any("Traceback" in line for line in lines),
            f"answers {dict(got)}; health while full {during}, after {after}; rows loaded "
            f"{loaded:.0f} before the stop, {counted_rows} in the warehouse, of {downloads} "
            f"downloads (space back at {freed}); exit {process.returncode}; {said(lines)}",
        )
        for line in lines:
            if "ERROR" in line or "WARNING" in line or "Traceback" in line:
                print("  serve: " + line[:240])


# --- nofile: a low open-file limit under a crowd ----------------------------------------


async def crowd(port: int, routes: list[str], count: int, hold: float) -> Counter[str]:
    """``count`` clients at once, each a connection asking one of ``routes`` (then kept
    open ``hold`` seconds, so the server holds them all): what each got."""

    async def one(number: int) -> str:
        path = routes[number % len(routes)]
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 20)
        except (OSError, TimeoutError) as exc:
            return f"connect {type(exc).__name__}"
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readline(), 30)
            parts = head.split()
            await asyncio.sleep(hold)
            return parts[1].decode() if len(parts) > 1 else "closed"
        except (OSError, TimeoutError) as exc:
            return type(exc).__name__
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return Counter(await asyncio.gather(*(one(n) for n in range(count))))


def health_beside(port: int, stop_at: float) -> list[bool]:
    seen = []
    while time.monotonic() < stop_at:
        seen.append(answers(port, "/_health", within=5))
        time.sleep(0.5)
    return seen


async def crowds(row: Server, clients: int) -> dict[str, Counter[str]]:
    """``clients`` clients spread over every port of ``row``: what each port's got."""
    ports = list(row.ports.items())
    answered = await asyncio.gather(
        *(
            crowd(port, row.routes[service], clients // len(ports), hold=3)
            for service, port in ports
        )
    )
    return {service: got for (service, _), got in zip(ports, answered, strict=True)}


def nofile_row(root: Path, row: Server, clients: int, nofile: int) -> None:
    """``row``'s server with ``nofile`` descriptors under ``clients`` clients. Its /_health is
    asked all along on a fresh connection (5 s each): reported, not judged, as a server at
    its ``max_connections`` leaves new connections in the backlog, /_health's too."""
    env = {**os.environ, "PYTHONHOSTED_LOG_LEVEL": "WARNING", **row.env}
    stderr = root / f"{row.name.replace(' ', '_')}.nofile.err"
    first_port = next(iter(row.ports.values()))
    healths: list[bool] = []
    stop_at = time.monotonic() + 25
    watcher = threading.Thread(target=lambda: healths.extend(health_beside(first_port, stop_at)))
    with (
        contextlib.chdir(root / "rehearsal"),
        serving(row.argv, env, first_port, stderr, nofile) as process,
    ):
        limit = next(
            line.split()[3]
            for line in Path(f"/proc/{process.pid}/limits").read_text().splitlines()
            if line.startswith("Max open files")
        )
        watcher.start()
        results = asyncio.run(crowds(row, clients))
        watcher.join()
        after = {
            service: answers(port, "/_health", within=5) for service, port in row.ports.items()
        }
        alive = process.poll() is None
    lines = stderr.read_text().splitlines()
    emfile = sum("Too many open files" in line for line in lines)
    tracebacks = sum("Traceback" in line for line in lines)
    check(
        f"nofile {nofile}: {row.name}",
        alive and all(after.values()) and tracebacks == 0,
        f"limit {limit}; answers { {s: dict(c) for s, c in results.items()} }; health during "
        f"{sum(healths)}/{len(healths)}, after {after}; {len(lines)} stderr lines, "
        f"{emfile} EMFILE, {tracebacks} tracebacks; first {lines[0][:160] if lines else ''!r}",
    )


def part_nofile(root: Path, clients: int, nofile: int) -> None:
    (root / "rehearsal").mkdir(exist_ok=True)
    for row in servers(root / "rehearsal", None):
        if "--workers" not in row.name:
            nofile_row(root, row, clients, nofile)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="files,upload,linehaul,linehaul-serve,docs,serve,nofile")
    parser.add_argument("--downloads", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--nofile", type=int, default=256)
    args = parser.parse_args()
    parts = args.parts.split(",")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="probe-full-") as tmp:
        root = Path(tmp)
        for part in parts:
            where = root / part
            where.mkdir()
            if part == "files":
                part_files(where, args.downloads)
            elif part == "upload":
                part_upload(where)
            elif part == "linehaul":
                part_linehaul(where)
            elif part == "linehaul-serve":
                part_linehaul_serve(where)
            elif part == "serve":
                part_serve(where, args.downloads)
            elif part == "docs":
                part_docs(where)
            elif part == "nofile":
                part_nofile(where, args.clients, args.nofile)
            else:
                raise SystemExit(f"no part {part!r}")
            shutil.rmtree(where, ignore_errors=True)
    took = time.monotonic() - began
    print(f"{VERDICTS.count(True)} passed, {VERDICTS.count(False)} failed in {took:.0f} s")
    print(machine())


if __name__ == "__main__":
    main()
