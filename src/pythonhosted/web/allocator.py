"""Memory that a burst of connections leaves behind goes back to the system within seconds.

granian's Rust side allocates with jemalloc, which by default keeps freed pages for ten
seconds and only returns them while it is still allocating: after 1,000 slow downloads left
a files edge, 290 MB (4.4x its idle size) stayed resident for as long as it was idle. With a
background thread purging pages unused for a second, the same edge was back within 20 % of
idle three seconds later (BENCHMARKS.md).

jemalloc reads these options once, when granian's extension first allocates, so they must be
in the environment before granian is imported: the console entry point sets them first thing.
An operator's own ``_RJEM_MALLOC_CONF`` wins.
"""

from __future__ import annotations

import os

JEMALLOC_ENV = "_RJEM_MALLOC_CONF"  # tikv-jemallocator's prefixed name, as granian builds it
JEMALLOC_OPTIONS = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"


def return_memory_promptly() -> None:
    """Set granian's allocator options, unless the environment already has some."""
    os.environ.setdefault(JEMALLOC_ENV, JEMALLOC_OPTIONS)
