"""A process holding a file's ``flock``, as a live spool writer or warehouse writer does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.processes import spawn

_HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
if sys.argv[2] == "pid":
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
sys.stdin.read()
"""


def lock_holder(path: Path, *, write_pid: bool = False) -> subprocess.Popen[bytes]:
    """A process (in its own group, killed when the test ends) that has taken ``path``'s
    exclusive lock, and with ``write_pid`` written its PID into it, before this returns."""
    holder = spawn(
        [sys.executable, "-c", _HOLD, str(path), "pid" if write_pid else "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    return holder
