"""Peak memory and CPU of ``files upload`` of large wheels, for one source tree or several.

    .venv/bin/python bench/upload.py [--sizes-mb 100 1024] [--runs 2] [--src DIR ...]

Each run uploads one wheel (a stored member that does not compress,
``samples.write_large_wheel``) to a fresh local directory store in a new process, and reports
that process's peak RSS and its CPU (user + system) as ``wait4`` gives them. A tiny wheel's
upload is the baseline: what the command costs whatever the file. ``--src`` takes source trees
(``src/`` of another checkout, e.g. ``git archive main src | tar -x -C /tmp/old``) measured
alternately in the same run. The upload limit is lifted for every tree so old code takes the
large files too. Files are written under ``--dir`` (default: the system's temporary
directory), read from the page cache after the first run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from loadgen import machine
from pythonhosted.samples import write_large_wheel

HERE = Path(__file__).parent
MiB = 2**20


def measure(tree: str, wheel: Path, scratch: Path) -> tuple[float, float]:
    """Peak RSS (MB) and CPU seconds of one upload of ``wheel`` by the code in ``tree``."""
    store = scratch / "store"
    shutil.rmtree(store, ignore_errors=True)
    env = {
        "PYTHONPATH": tree,
        "PATH": "/usr/bin:/bin",
        "PYTHONHOSTED_FILES__UPLOAD_MAX_BYTES": str(2**40),
    }
    argv = [sys.executable, "-m", "pythonhosted", "files", "upload", "--store", f"file://{store}"]
    process = subprocess.Popen([*argv, str(wheel)], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{tree}: upload of {wheel.name} exited {process.returncode}")
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1024])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--src", action="append", help="a source tree to measure (repeatable)")
    parser.add_argument("--dir", type=Path, default=None, help="where the wheels are written")
    args = parser.parse_args()
    trees = args.src or [str(HERE.parent / "src")]
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-upload-", dir=args.dir) as scratch:
        root = Path(scratch)
        wheels = {0: write_large_wheel(root / "wheels", "tiny-wheel", "1.0", 0)}
        for size in args.sizes_mb:
            wheels[size] = write_large_wheel(root / "wheels", f"big-{size}", "1.0", size * MiB)
        for size, wheel in wheels.items():
            results: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
            for _ in range(args.runs):
                for tree in trees:
                    results[tree].append(measure(tree, wheel, root))
            for tree, values in results.items():
                peaks = ", ".join(f"{peak:.0f}" for peak, _ in values)
                cpus = ", ".join(f"{cpu:.2f}" for _, cpu in values)
                label = f"{size} MiB payload" if size else "tiny wheel"
                print(f"{label}, {tree}: peak RSS {peaks} MB; CPU {cpus} s")


if __name__ == "__main__":
    main()
