"""Reading files that hold a few bytes (keys, secrets) without trusting them to be small.

Read whole, /dev/zero or a 10 GB file filled memory until the process was killed (a 3 GB
``DATA/purge.key``: 3.2 GB peak, then a MemoryError); a FIFO nobody writes to blocked the
opening forever. A file is opened without blocking (then read as a pipe: ``--key-file
<(pass show camo)`` still works) and read up to a bound.
"""

from __future__ import annotations

import os
from pathlib import Path


def read_small_file(path: Path, max_bytes: int, what: str) -> bytes:
    """``path``'s bytes; ValueError naming ``what`` and the file past ``max_bytes`` of them
    (OSError, FileNotFoundError included, as ``open`` raises it)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(fd, True)
    with open(fd, "rb") as stream:
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{what} is larger than {max_bytes} bytes: {path}")
    return data
