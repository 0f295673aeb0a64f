"""Benchmark: the catalog's names snapshot and the index's keeper at a million projects.

    .venv/bin/python bench/names_snapshot.py [--projects 1000000] [--dir /tmp/names-snapshot]
                                             [--runs 3]

In a ``file://`` store in ``--dir`` (made and emptied here; no catalog records needed), for
``--projects`` names like the simple index's: a snapshot's write (:func:`write_names`: gzip in
a thread, the put, the listing and the removal of older ones) and its read
(:func:`read_names`), each with its wall time, this process's CPU and the peak of Python's
allocations meanwhile (tracemalloc, which slows them: timed apart); then one turn of the
index's keeper (:meth:`CatalogPages.project_names`, as :meth:`CatalogPages._keep` calls it)
holding that list with nothing changed: a renewal due (written) and one another process made
needless (one listing). The machine is shared: the CPU model and load average are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pythonhosted.catalog import NamesSnapshot, read_names, write_names
from pythonhosted.index import cached_catalog
from pythonhosted.index.cached_catalog import CatalogPages
from pythonhosted.storage import Store, open_store


async def timed(label: str, work: Callable[[], Awaitable[Any]]) -> Any:
    began, cpu = time.monotonic(), time.process_time()
    result = await work()
    wall, used = time.monotonic() - began, time.process_time() - cpu
    print(f"{label:<44} wall {wall:6.3f} s  CPU {used:6.3f} s")
    return result


async def peak(label: str, work: Callable[[], Awaitable[Any]]) -> None:
    tracemalloc.start()
    await work()
    _, most = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label:<44} peak of allocations {most / 2**20:6.1f} MiB")


async def one_run(store: Store, names: list[str], root: Path) -> None:
    now = time.time_ns()
    snapshot = NamesSnapshot(now, names, now)
    await timed("write_names", lambda: write_names(store, snapshot))
    (written,) = list((root / "catalog-names").iterdir())
    print(f"{'snapshot size':<44} {written.stat().st_size / 1e6:.2f} MB")
    await timed("read_names", lambda: read_names(store))
    await peak("write_names", lambda: write_names(store, NamesSnapshot(now + 1, names, now)))
    await peak("read_names", lambda: read_names(store))
    pages = CatalogPages(store, 60.0, 2**20)
    # What a keeper holds: the list read from the snapshot (no watch: nothing changes here).
    pages._names = (time.monotonic() + 3600, names)
    pages._names_ns = pages._looked_ns = time.time_ns()
    pages._walked_ns = now
    pages._snapshot_ns = 1  # a renewal
    cached_catalog.SNAPSHOT_EVERY = 0.0

    async def turn() -> None:
        await pages.project_names()
        if pages._writing is not None:
            await pages._writing

    await timed("keeper turn, nothing changed, renewal due", turn)
    cached_catalog.SNAPSHOT_EVERY = 3600.0
    pages._snapshot_ns = 1
    await timed("keeper turn, another process wrote one", turn)
    shutil.rmtree(root / "catalog-names")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--projects", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/names-snapshot"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    store = open_store(f"file://{args.dir}")
    names = sorted(f"project-{number:07d}" for number in range(args.projects))
    cpu = Path("/proc/cpuinfo").read_text().split("model name", 1)[1].split("\n", 1)[0]
    print(cpu.strip(": \t"), f"{args.projects:,} names")
    for run in range(args.runs):
        print(f"run {run + 1}, load average {os.getloadavg()}")
        await one_run(store, names, args.dir)
    shutil.rmtree(args.dir)


if __name__ == "__main__":
    asyncio.run(main())
