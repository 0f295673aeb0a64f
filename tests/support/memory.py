"""A server process's resident memory, read from /proc, and waits for it to settle."""

from __future__ import annotations

from pathlib import Path

from support.processes import wait_until


def resident(pid: int) -> int:
    """The process's resident set size, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def settled(pid: int) -> int:
    """The resident size once it stops moving (two readings 0.5 s apart within 1 MB)."""
    readings = [resident(pid)]

    def still() -> int | None:
        readings.append(resident(pid))
        return readings[-1] if abs(readings[-1] - readings[-2]) < 2**20 else None

    return wait_until(still, timeout=30, interval=0.5)
