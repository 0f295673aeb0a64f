"""Memory that a burst of connections leaves behind goes back to the system within seconds.

granian's Rust side allocates with jemalloc, which by default keeps freed pages for ten
seconds and only returns them while it is still allocating: after 1,000 slow downloads left
a files edge, 290 MB (4.4x its idle size) stayed resident for as long as it was idle. With a
background thread purging pages unused for a second, the same edge was back within 20 % of
idle three seconds later (BENCHMARKS.md).

jemalloc reads these options once, when granian's extension first allocates, so they must be
in the environment before granian is imported: the console entry point sets them first thing.
An operator's own ``_RJEM_MALLOC_CONF`` wins.

Python's own larger objects come from the C library's heap, which gives memory back only from
its top: the pieces cut for slow clients of a cached body (``pythonhosted.web.objects``),
interleaved with everything else 1,000 connections allocate, left it 9.5 MB larger after they
left. ``trim_heap`` hands the heap's free pages back (glibc's ``malloc_trim``; elsewhere it
does nothing).

The two services crowds come to, the files edge and camo, also keep Python's objects on the
C library's allocator (:func:`serve_on_the_c_allocator`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

JEMALLOC_ENV = "_RJEM_MALLOC_CONF"  # tikv-jemallocator's prefixed name, as granian builds it
JEMALLOC_OPTIONS = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
PYTHON_ALLOCATOR_ENV = "PYTHONMALLOC"

_as_command = False  # run by the console entry point: a process of its own, free to exec


def return_memory_promptly() -> None:
    """Set granian's allocator options, unless the environment already has some."""
    os.environ.setdefault(JEMALLOC_ENV, JEMALLOC_OPTIONS)


def running_as_command() -> None:
    """Note that this process is the ``pythonhosted`` command itself (not a caller of its
    commands in-process, such as a test's CLI runner), so it may replace itself."""
    global _as_command
    _as_command = True


def serve_on_the_c_allocator() -> None:
    """Serve with Python's objects on the C library's allocator: re-execute this command
    with ``PYTHONMALLOC=malloc`` unless the environment names an allocator already.

    Python's own allocator frees a 1 MiB arena only once every block in it is free. After a
    crowd of connections a few hundred long-lived blocks stay spread over the arenas the
    crowd made (the free lists of asyncio's future iterators and uvloop's handles, refilled
    during the crowd; the ``Date`` line of the current second), which no Python call can
    move: 1,000 slow downloads left the files edge at 1.19-1.20x its idle size (8 MiB of such
    arenas), 5,000 clients of one image left camo at 1.5x. On glibc's allocator, whose free
    pages ``trim_heap`` returns, the same crowds leave 1.05x and 1.18x, for 0-15 % more CPU
    per request (BENCHMARKS.md, session 25). The interpreter reads ``PYTHONMALLOC`` only as it
    starts, hence the exec: a command calls this first, before it claims or starts anything.
    An operator's own ``PYTHONMALLOC`` wins (``pymalloc`` keeps Python's)."""
    if not _as_command or PYTHON_ALLOCATOR_ENV in os.environ:
        return
    os.environ[PYTHON_ALLOCATOR_ENV] = "malloc"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, sys.orig_argv)
    except OSError as exc:  # no interpreter to run again (an embedded one): serve as is
        del os.environ[PYTHON_ALLOCATOR_ENV]
        logging.getLogger(__name__).warning(
            "serving on Python's own allocator: cannot re-execute %s: %s", sys.executable, exc
        )


def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


_TRIM = _malloc_trim()


def trim_heap() -> None:
    """Return the C heap's free pages to the system (a few ms for a heap of tens of MB)."""
    if _TRIM is not None:
        _TRIM(0)
