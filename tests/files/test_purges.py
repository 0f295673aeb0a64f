"""PURGE on `files serve --workers 2`: every worker forgets what any of them took a purge for,
and serves on whatever else is asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from pythonhosted.web.server import Bind, free_port
from support.edge import SAMPLES, edge_process, seed

SDIST = SAMPLES["sdist"]
SECRET = {"PYTHONHOSTED_FILES__PURGE_SECRET": "purge-token"}
BEARER = {"authorization": "Bearer purge-token"}
# Runs the command line under a file-size limit: the purge journal's writes past it fail as on
# a full disk.
LIMITED = """
import resource, signal, sys
from pythonhosted.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit: EFBIG, as ENOSPC on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
main(sys.argv[1:])
"""


def _purge_path(n: int) -> str:
    return f"/packages/ab/cd/{'e' * 60}/f{n:04d}.whl"  # 88 bytes as a journal entry


def test_a_purge_of_one_file_leaves_every_other_file_served(tmp_path: Path) -> None:
    """Each worker, reading another's purges before a lookup, looked up the last purged key in
    place of the one asked for: the first request of every worker after any purge was a 404
    for a file that is there."""
    primary, bind = f"file://{tmp_path}/primary", Bind("127.0.0.1", free_port())
    seed(primary)
    with edge_process(tmp_path, primary, bind, workers=2, settings=SECRET):
        url = bind.url()
        purged = httpx.request("PURGE", url + _purge_path(0), headers=BEARER)
        assert purged.status_code == 200
        # New connections each: the kernel hands them to either worker.
        assert [httpx.get(url + SDIST.path).status_code for _ in range(20)] == [200] * 20


def test_a_purge_the_full_journal_refuses_is_503_and_the_edge_serves_on(tmp_path: Path) -> None:
    """A purge the journal could not record (its disk full) would reach only the worker that
    took it: it was a 500 with a traceback in the log. It is a 503 that says to try again; the
    purges before it were acknowledged, and the edge serves on."""
    primary, bind = f"file://{tmp_path}/primary", Bind("127.0.0.1", free_port())
    seed(primary)
    runner = (sys.executable, "-c", LIMITED)
    with (
        edge_process(
            tmp_path, primary, bind, 2, subprocess.PIPE, settings=SECRET, runner=runner
        ) as edge,
        httpx.Client(base_url=bind.url()) as client,
    ):
        answers = []
        for n in range(1000):
            answer = client.request("PURGE", _purge_path(n), headers=BEARER)
            answers.append(answer.status_code)
            if answer.status_code != 200:
                break
        assert (answers.count(200), answers[-1]) == ((4096 - 16) // 88, 503)
        reason = "Purge not recorded for every worker (File too large); try again\n"
        assert (answer.text, answer.headers["retry-after"]) == (reason, "1")
        assert [client.get(SDIST.path).status_code for _ in range(20)] == [200] * 20
    _, log = edge.communicate(timeout=60)
    assert b"Traceback" not in log
    assert log.count(b"not shared with the other workers: File too large") == 1
