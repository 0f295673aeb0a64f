"""Subprocesses that never outlive their test, and waiting on conditions instead of sleeping.

Every process starts in its own session (so its own process group) and the whole group is
killed on the way out, whether the test passed, failed or was interrupted by pytest-timeout
(its signal method raises inside the test, so ``finally`` runs). A pytest killed outright
runs no ``finally``: for that, each group :func:`spawn` and :func:`started` start is also in
the care of this test process's :class:`Reaper`, which kills the groups still left when the
test process is gone (the session's servers, :func:`start_server`, die by the kernel's hand).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PYTHONHOSTED = [sys.executable, "-m", "pythonhosted"]


def wait_until(
    condition: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.02
) -> T:
    """Poll ``condition`` until it returns something truthy; return it, or fail at ``timeout``.

    A minute by default: what a test waits for is a server doing something it does in well
    under a second, but at load 10-20 a starved server was seen taking 10-30 s, and a passing
    test never waits the timeout out."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition!r}")
        time.sleep(interval)


def child_pids(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (a server's worker processes), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an orphan's reaper may be slow or absent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` yet (so a stop is graceful)."""
    return _signal_in(pid, ("SigCgt:",), signum)


def holds(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has ``signum`` pending (blocked until it lets it through)."""
    return _signal_in(pid, ("SigPnd:", "ShdPnd:"), signum)


def _signal_in(pid: int, sets: tuple[str, ...], signum: int) -> bool:
    """Whether ``signum`` is in any of the signal sets of ``/proc/PID/status`` named."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(sets) and int(line.split()[1], 16) & (1 << (signum - 1)):
            return True
    return False


def stop_group(
    process: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 10.0
) -> None:
    """SIGTERM the process's group, then SIGKILL what is left after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    reaper.forget(process.pid)


def finish_group(process: subprocess.Popen[bytes], grace: float = 30.0) -> tuple[bytes, bytes]:
    """SIGTERM the process's group and collect its output; SIGKILL the group if it outlives
    ``grace`` (the output read so far is returned either way)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.communicate()
    finally:
        reaper.forget(process.pid)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def dying_with(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when ``parent`` (this process,
    read before the fork) exits, however it exits: a session's servers must not outlive a
    pytest that was itself killed (SIGKILL runs no finaliser). Linux's ``PR_SET_PDEATHSIG``;
    if the parent is already gone by the time the child asks, the child ends itself.

    The signal comes when the *thread* that forked the child ends, so start such children
    from a thread that lives as long as they should (pytest's main thread for the session's).
    """

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only makes the call

    def die_with_parent() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # it died before the request took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return die_with_parent


# The reaper's program: "+PGID" and "-PGID" lines take groups into its care and out of it; at the
# end of its input (the test process ended, however it ended) it kills the groups in its care.
_REAPER = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    pgid = int(line)
    if pgid > 0:
        groups.add(pgid)
    else:
        groups.discard(-pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""


class Reaper:
    """A process beside this one that kills the process groups this one started and has not
    stopped yet when this one ends: when pytest (or an xdist worker) is SIGKILLed, the
    finalisers that stop a test's processes never run (three ``camo serve`` outlived a killed
    run by 80 minutes).

    It learns of the end from its standard input, a pipe only this process holds, reaching
    its end. Not ``PR_SET_PDEATHSIG`` (:func:`dying_with`): that fires when the *thread* that
    forked the child ends, and tests start processes from worker threads that end long
    before the process they started should; and it kills only the child, not the workers
    the child forked in its group. The reaper is in a session of its own, out of reach of
    a signal to pytest's group (a terminal's Ctrl-C), and started again in a forked child
    of this process, whose groups are its own.

    A process killed between its fork and :meth:`watch` is not seen: a few microseconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = 0  # the pid the reaper watches
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The reaper process's pid, once this process started one."""
        return self._process.pid if self._process is not None else None

    def watch(self, pgid: int) -> None:
        """Kill group ``pgid`` if this process ends before :meth:`forget`."""
        self._tell(pgid)

    def forget(self, pgid: int) -> None:
        """Group ``pgid`` was stopped (or is not in this reaper's care)."""
        self._tell(-pgid)

    def _tell(self, line: int) -> None:
        with self._lock:
            if self._owner != os.getpid():
                self._start()
            try:
                self._write(line)
            except BrokenPipeError:  # the reaper was killed (by hand): a new one from here on
                self._start()
                self._write(line)

    def _write(self, line: int) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(b"%d\n" % line)
        self._process.stdin.flush()

    def _start(self) -> None:
        self._owner = os.getpid()
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _REAPER],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        atexit.register(self._close, self._process, self._owner)

    @staticmethod
    def _close(process: subprocess.Popen[bytes], owner: int) -> None:
        """At a clean exit: end its input and wait for it (no "still running" warning)."""
        if os.getpid() == owner and process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # one that was killed
                process.stdin.close()
            process.wait(timeout=60)


reaper = Reaper()


def start_server(argv: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start a long-lived server for the tests (the session's S3 and GCS servers): in its own
    process group, killed by the kernel if this process dies before stopping it."""
    return subprocess.Popen(
        list(argv), start_new_session=True, preexec_fn=dying_with(os.getpid()), **options
    )


_spawned: list[subprocess.Popen[bytes]] = []


def spawn(argv: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group; the suite's autouse fixture (conftest.py)
    kills the group when the test ends, however it ends, if it is still running."""
    process: subprocess.Popen[bytes] = subprocess.Popen(
        list(argv), start_new_session=True, **options
    )
    reaper.watch(process.pid)
    _spawned.append(process)
    return process


def stop_spawned() -> None:
    """Kill what :func:`spawn` started and is still running (a test's teardown)."""
    while _spawned:
        process = _spawned.pop()
        if process.poll() is None:
            stop_group(process, grace=5.0)
        else:
            reaper.forget(process.pid)


@contextlib.contextmanager
def started(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdout: int | None = subprocess.DEVNULL,
    stderr: int | None = subprocess.DEVNULL,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in its own process group for the ``with`` block; the group dies after,
    and with this process if it is killed first (:data:`reaper`)."""
    process = subprocess.Popen(
        list(argv), env=env, cwd=cwd, stdout=stdout, stderr=stderr, start_new_session=True
    )
    reaper.watch(process.pid)
    try:
        yield process
    finally:
        stop_group(process)


def wait_listening(
    process: subprocess.Popen[bytes], host: str, port: int, log: Path, timeout: float = 60.0
) -> None:
    """Until ``process`` listens on ``host:port``. A process that exits first fails at once, and
    either failure says how it ended and what its log (``log``, its stderr) says last: a bare
    "nothing listening after 60 s" left a server that had died at start unexplained."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        ended = process.poll()
        if ended is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            state = (
                f"exited with {ended}" if ended is not None else f"not listening after {timeout} s"
            )
            raise AssertionError(
                f"{' '.join(map(str, process.args))}: {state}; its log ends:\n{tail}"
            )
        time.sleep(0.1)
