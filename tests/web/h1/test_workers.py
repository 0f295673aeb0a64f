"""``files serve --workers 2`` on worker processes of ours (``pythonhosted.web.h1.workers``):
each answers quickly, a stop ends them all, a worker that dies is replaced, and none serves
on when the supervisor is killed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from pythonhosted.web.h1.workers import EARLY
from pythonhosted.web.server import Bind, free_port
from support.edge import SAMPLES, edge_process, seed
from support.processes import child_pids, running, wait_until

WHEEL = SAMPLES["wheel"]


def two_workers(pid: int, without: int = 0) -> set[int] | None:
    found = set(child_pids(pid))
    return found if len(found) == 2 and without not in found else None


def age(pid: int) -> float:
    """Seconds since process ``pid`` started."""
    started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - started / os.sysconf("SC_CLK_TCK")


def quick_answers(bind: Bind) -> int:
    metrics = httpx.get(f"{bind.url()}/metrics", timeout=30).text
    found = re.search(r"^files_quick_answers_total (\S+)$", metrics, re.MULTILINE)
    assert found is not None
    return int(float(found.group(1)))


@pytest.fixture
def primary(tmp_path: Path) -> str:
    url = f"file://{tmp_path}/primary"
    seed(url)
    return url


def test_two_workers_answer_quickly_and_a_stop_ends_them_all(tmp_path: Path, primary: str) -> None:
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind, workers=2, stderr=subprocess.PIPE) as server:
        workers = wait_until(lambda: two_workers(server.pid))
        # New connections land on either worker; each caches the body on its first request.
        for _ in range(40):
            response = httpx.get(bind.url() + WHEEL.path, timeout=30)
            assert response.content == WHEEL.data
        wait_until(lambda: quick_answers(bind) >= 38)  # the workers' snapshots: ~2 s
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    assert b"Traceback" not in stderr
    assert not any(running(pid) for pid in workers)


@pytest.mark.long
def test_a_worker_that_dies_is_replaced_and_none_outlives_the_supervisor(
    tmp_path: Path, primary: str
) -> None:
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind, workers=2, stderr=subprocess.PIPE) as server:
        first = wait_until(lambda: two_workers(server.pid))
        wait_until(lambda: httpx.get(bind.url() + "/_health").status_code == 200)
        victim = min(first)
        # Past its start: a death now is a crash to recover from, not a failed start.
        wait_until(lambda: age(victim) > EARLY + 1, timeout=EARLY + 60, interval=0.5)
        os.kill(victim, signal.SIGKILL)
        now = wait_until(lambda: two_workers(server.pid, without=victim))
        for _ in range(10):
            assert httpx.get(bind.url() + WHEEL.path, timeout=30).content == WHEEL.data
        os.kill(server.pid, signal.SIGKILL)
        wait_until(lambda: not any(running(pid) for pid in now), timeout=30)
