"""Running ``pythonhosted ARGS`` in a subprocess whose peak memory is measured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from support.processes import spawn

PEAK_SCRIPT = Path(__file__).parent / "peak.py"


def run_measured(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[int, str, str, int]:
    """Run ``pythonhosted ARGS`` in its own process group; exit code, stdout, stderr and its
    peak RSS in bytes (``VmHWM``, see ``support/peak.py``)."""
    peak_file = tmp_path / "peak"
    process = spawn(
        [sys.executable, str(PEAK_SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {}), "PEAK_FILE": str(peak_file)},
    )
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return process.returncode, out.decode(), err.decode(), int(peak_file.read_text())
