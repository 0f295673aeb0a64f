"""Run ``pythonhosted ARGS`` and write the process's peak RSS, in bytes, to ``$PEAK_FILE``.

Tests measure a command's memory with this rather than ``ru_maxrss``: Linux carries the
parent's peak into a child's ``ru_maxrss`` across fork and exec, so a large test process would
hide a small command and fail a bounded one. ``VmHWM`` belongs to the command's own address
space. Exits like the console script (``os._exit``, see ``pythonhosted.cli.run``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pythonhosted.cli import main


def peak_rss() -> int:
    """This process's high-water resident set size, from /proc (bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    Path(os.environ["PEAK_FILE"]).write_text(str(peak_rss()))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
