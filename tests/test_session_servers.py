"""The session's servers (moto, SeaweedFS, fake-gcs-server, bqemulator) die with the pytest
that started them, even when pytest is killed outright and runs no finaliser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from support.processes import spawn, wait_until

TESTS = Path(__file__).parent

# A pytest stand-in: a server through support.processes.start_server, as conftest.py starts
# them, and for comparison a process started the usual way (its own session, nothing more).
PARENT = textwrap.dedent(
    f"""
    import signal, subprocess, sys
    sys.path.insert(0, {str(TESTS)!r})
    from support.processes import start_server
    forever = [sys.executable, "-c", "import signal; signal.pause()"]
    server = start_server(forever)
    plain = subprocess.Popen(forever, start_new_session=True)
    print(server.pid, plain.pid, flush=True)
    signal.pause()
    """
)


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an orphan's reaper may be slow or absent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_server_dies_with_a_killed_parent() -> None:
    parent = spawn([sys.executable, "-c", PARENT], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    server, plain = map(int, parent.stdout.readline().split())
    try:
        assert running(server) and running(plain)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        wait_until(lambda: not running(server))
        assert running(plain)  # what the server would have done without start_server
    finally:
        os.killpg(plain, signal.SIGKILL)
