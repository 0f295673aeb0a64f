"""Several machines, simulated: two files edges, two ingest workers and a publisher as separate
processes on one SeaweedFS cluster, workers killed with SIGKILL in a loop, and every download
in the warehouse exactly once.

Each edge has its own data dir and spool, as on its own host; they share only the object
stores (primary, logs, results) on SeaweedFS, a real distributed store with its own master,
volume server, filer and S3 gateway. The edges stop gracefully at the end (a SIGKILL of an
edge may lose up to its spool interval, by design; the workers' kills must lose nothing).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import duckdb
import httpx
import pytest

from pythonhosted.storage import Store, open_store
from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.edge import SAMPLES, seed
from support.linehaul_data import PIP
from support.processes import PYTHONHOSTED, catches, started, stop_group, wait_until

DOWNLOADS = 2_000
KILLS = 8


def _sub(url: str, prefix: str) -> str:
    base, query = url.split("?", 1)
    return f"{base}/{prefix}?{query}"


def _rows(warehouse: Path) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as db:
        row = db.execute("SELECT count(*) FROM file_downloads").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def cluster(seaweedfs_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    urls = {name: _sub(seaweedfs_url, name) for name in ("primary", "logs", "results")}
    seed(urls["primary"])
    yield urls


@pytest.mark.long
def test_two_edges_two_ingesters_one_publisher_exactly_once(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    rng = random.Random(19)
    warehouse = tmp_path / "warehouse.duckdb"
    base_env = {
        **os.environ,
        "PYTHONHOSTED_FILES__LOG_PERIOD": "1",
        "PYTHONHOSTED_FILES__LOG_SPOOL_SYNC_INTERVAL": "0.2",
        "PYTHONHOSTED_LINEHAUL__INGEST_INTERVAL": "0.5",
        "PYTHONHOSTED_LINEHAUL__PUBLISH_INTERVAL": "0.5",
        "PYTHONHOSTED_LINEHAUL__LEASE_TIMEOUT": "2",
    }
    edges = [Bind("127.0.0.1", free_port()) for _ in range(2)]
    workers = {
        "ingest": ["ingest", "--logs", cluster["logs"], "--results", cluster["results"]],
        "publish": [
            "publish",
            "--results",
            cluster["results"],
            "--warehouse",
            f"duckdb://{warehouse}",
        ],
    }
    with ExitStack() as stack:
        edge_processes = []
        for number, bind in enumerate(edges):
            env = {**base_env, "PYTHONHOSTED_DATA_DIR": str(tmp_path / f"host-{number}")}
            argv = [*PYTHONHOSTED, "files", "serve", "--primary", cluster["primary"]]
            argv += ["--logs", cluster["logs"], "--bind", str(bind)]
            edge_processes.append(stack.enter_context(started(argv, env=env)))
            wait_for_port(bind, timeout=60)

        def worker(kind: str) -> subprocess.Popen[bytes]:
            argv = [*PYTHONHOSTED, "linehaul", *workers[kind]]
            return stack.enter_context(started(argv, env=base_env, cwd=tmp_path))

        running = {"ingest-1": worker("ingest"), "ingest-2": worker("ingest")}
        running["publish"] = worker("publish")

        paths = [sample.path for sample in SAMPLES.values()]
        plan = list(zip(itertools.cycle(edges), itertools.cycle(paths), range(DOWNLOADS)))

        # A client per thread: threads sharing one client's pool saw a request's connection
        # closed under it ("Bad file descriptor", once, at load 13): httpcore 1.0.9's pool can
        # close a connection it has just given to another thread (encode/httpcore#1110).
        clients: list[httpx.Client] = []
        own = threading.local()

        def close_clients() -> None:
            for client in clients:
                client.close()

        stack.callback(close_clients)

        def download(step: tuple[Bind, str, int]) -> int:
            bind, path, _ = step
            mine: dict[Bind, httpx.Client] | None = getattr(own, "clients", None)
            if mine is None:
                mine = own.clients = {edge: httpx.Client(base_url=edge.url()) for edge in edges}
                clients.extend(mine.values())
            return mine[bind].get(path, headers={"User-Agent": PIP}).status_code

        kills = 0
        with ThreadPoolExecutor(8) as pool:
            pending = pool.map(download, plan)
            deadline = time.monotonic() + 60
            while kills < KILLS and time.monotonic() < deadline:
                time.sleep(rng.uniform(0.3, 1.2))
                name = rng.choice(sorted(running))
                os.kill(running[name].pid, signal.SIGKILL)
                running[name].wait(timeout=30)
                kills += 1
                running[name] = worker("publish" if name == "publish" else "ingest")
            assert list(pending) == [200] * DOWNLOADS

        for process in [*edge_processes, *running.values()]:
            wait_until(lambda process=process: catches(process.pid, signal.SIGTERM))
            stop_group(process)  # edges ship every spooled line; workers finish what they hold
            assert process.returncode == 0
    assert kills == KILLS

    # Whatever the dead workers left leased is free once their leases expire; then one more
    # ingest and publish drain the stores, as the next scheduled passes would.
    logs = open_store(cluster["logs"])
    wait_until(lambda: _drained(logs, workers["ingest"], tmp_path), timeout=120, interval=0.5)
    finish = subprocess.run(
        [*PYTHONHOSTED, "linehaul", *workers["publish"], "--once"],
        env=base_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finish.returncode == 0, finish.stderr
    assert _rows(warehouse) == DOWNLOADS


def _drained(logs: Store, ingest: list[str], cwd: Path) -> bool:
    """One ``ingest --once`` pass; True once no log object is left."""
    subprocess.run(
        [*PYTHONHOSTED, "linehaul", *ingest, "--once"],
        env={**os.environ, "PYTHONHOSTED_LINEHAUL__LEASE_TIMEOUT": "2"},
        cwd=cwd,
        capture_output=True,
        timeout=120,
    )
    return not asyncio.run(logs.list())
