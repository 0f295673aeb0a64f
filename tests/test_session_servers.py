"""The session's servers (moto, SeaweedFS, fake-gcs-server, bqemulator) and every process a
test starts die with the pytest that started them, even when pytest is killed outright and
runs no finaliser."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from support.processes import running, spawn, wait_until

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


# A pytest run's test that starts processes through support.processes the ways tests do (from
# the main thread and from a thread that has ended since; one with a child in its group, as a
# server's workers are) and is then killed outright, before any finaliser could stop them.
KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys, threading
    from pathlib import Path
    from support.processes import reaper, spawn, started

    FOREVER = [sys.executable, "-c", "import signal; signal.pause()"]
    FORKING = [sys.executable, "-c", "import os, signal; os.fork(); signal.pause()"]

    def test_left_running() -> None:
        groups = [spawn(FOREVER).pid, spawn(FORKING).pid]
        thread = threading.Thread(target=lambda: groups.append(spawn(FOREVER).pid))
        thread.start()
        thread.join()
        with started(FOREVER) as process:
            groups.append(process.pid)
            report = Path(os.environ["GROUPS_FILE"])
            pids = [reaper.pid, *groups]
            report.with_suffix(".tmp").write_text(" ".join(map(str, pids)))
            report.with_suffix(".tmp").rename(report)
            signal.pause()
    """
)


def members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and running(int(entry.name)):
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            if int(fields[2]) == pgid:
                found.append(int(entry.name))
    return found


def test_what_a_killed_pytest_started_dies_with_it(tmp_path: Path) -> None:
    test_file = tmp_path / "test_killed.py"
    test_file.write_text(KILLED_RUN)
    report = tmp_path / "groups"
    env = {**os.environ, "PYTHONPATH": str(TESTS), "GROUPS_FILE": str(report)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    run = spawn([*command, "--rootdir", str(tmp_path), str(test_file)], env=env, cwd=tmp_path)
    wait_until(lambda: report.exists() or run.poll() is not None)
    reaper, *groups = [int(pid) for pid in report.read_text().split()]
    try:
        assert len(groups) == 4 and all(members(pgid) for pgid in groups)
        wait_until(lambda: len(members(groups[1])) == 2)  # the forking one and its child
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        wait_until(lambda: not any(map(members, groups)))
        wait_until(lambda: not running(reaper))  # and the reaper's work is done
    finally:
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
