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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

JEMALLOC_ENV = "_RJEM_MALLOC_CONF"  # tikv-jemallocator's prefixed name, as granian builds it
JEMALLOC_OPTIONS = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"


def return_memory_promptly() -> None:
    """Set granian's allocator options, unless the environment already has some."""
    os.environ.setdefault(JEMALLOC_ENV, JEMALLOC_OPTIONS)


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
