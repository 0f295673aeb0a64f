"""Local directories a service writes to (data dir, spools), checked before it starts.

A read-only or misnamed directory used to surface as a traceback from deep inside whichever
component touched it first, sometimes only at the first request. Each is now created and
probed with a real write at start-up, and a failure is one line naming the directory and the
setting that chose it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


class UnwritableDirectory(Exception):
    """A directory the process must write to but cannot, in one line for the operator."""


def ensure_writable(path: Path, setting: str) -> Path:
    """Create ``path`` if needed and prove a file can be written there; return it."""
    probe = path / f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UnwritableDirectory(f"cannot write to {path} ({setting}): {reason}") from None
    return path
