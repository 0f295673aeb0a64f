"""The process's standard streams at their edges: closed when it starts, failing at its end.

A command started with a standard descriptor closed (``pythonhosted config >&-``, a
supervisor that closes stdin) had ``sys.stdout`` of ``None``: its output vanished and its
final flush was a traceback; worse, the first file it opened took the free descriptor 1,
where a library writing to "stdout" would write into it. Output that cannot be written
(``>/dev/full``, a closed stdout) is a failure the shell is told of, as coreutils do.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

# A command whose reader went away ends as one the shell saw killed by SIGPIPE would.
SIGPIPE_STATUS = 128 + 13


def hold_closed_descriptors() -> None:
    """Give each closed standard descriptor ``/dev/null`` and ``sys`` a stream on it.

    Stdin and stdout get it read-only: reading stdin finds its end at once, and writing to
    stdout fails (EBADF) so that a command whose output cannot go anywhere says so. Stderr
    gets it writable: with no stderr there is no one to tell.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            continue
        except OSError:
            held = os.open(os.devnull, os.O_WRONLY if fd == 2 else os.O_RDONLY)
        if held != fd:  # the lowest free descriptor is fd: only if another thread raced
            os.dup2(held, fd)
            os.close(held)
        stream = open(fd, "r" if fd == 0 else "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        setattr(sys, ("stdin", "stdout", "stderr")[fd], stream)


def flush_output() -> OSError | None:
    """Flush stdout; the error that kept it from being flushed, or ``None``.

    What a command wrote last may still be in the buffer when it returns: a full disk or a
    closed descriptor shows only here, after the command's own error handling.
    """
    try:
        sys.stdout.flush()
    except OSError as exc:
        return exc
    return None


def reader_left() -> NoReturn:
    """End a command whose reader went away mid-output (``… | head``): quietly, with
    :data:`SIGPIPE_STATUS`; stdout goes to /dev/null so that the exit's flush finds no pipe."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(SIGPIPE_STATUS)
