"""Benchmark what a change to a large project costs its readers (the index and conveyor).

    .venv/bin/python bench/catalog.py [--files 50000] [--store DIR]

Writes ``--files`` catalog records of one project into a directory store (kept in --store
between runs, so a second run skips the writing), then, in the same run:

- the reference: every record read again (``project_records``: what the index and conveyor
  did after each upload, yank or delete, and at each TTL);
- ``read_project`` after one record changed (one listing, one read), and after none;
- ``select("P==V")`` for one release (what ``files yank``/``delete`` read).

Prints CPU seconds and store reads for each, and the reference's CPU over each one's.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import machine
from pythonhosted.catalog import (
    PREFIX,
    FileRecord,
    get_record,
    project_records,
    put_record,
    read_project,
)
from pythonhosted.files.manage import select
from pythonhosted.storage import Store, open_store

PROJECT = "nightly"
TAGS = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"


def write(root: Path, count: int) -> None:
    folder = root / PREFIX / PROJECT
    if folder.exists() and sum(1 for _ in folder.iterdir()) == count:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        filename = f"{PROJECT}-1.{number}-{TAGS}.whl"
        record = FileRecord(
            filename=filename,
            path=f"/packages/aa/bb/{number:060x}/{filename}",
            project=PROJECT,
            version=f"1.{number}",
            package_type="bdist_wheel",
            python_version="cp311",
            size=10**6 + number,
            sha256=f"{number:064x}",
            blake2b_256=f"aabb{number:060x}",
            upload_time="2026-01-01T00:00:00.123456Z",
            requires_python=">=3.8",
            metadata_sha256=f"{number + 1:064x}",
            md5=f"{number:032x}",
            uploaded_via="pythonhosted/0.1.0",
        )
        (folder / f"{filename}.json").write_bytes(record.to_json())


class Counted:
    """The store, counting record reads."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reads = 0

    async def get_bytes(self, key: str) -> bytes:
        self.reads += 1
        return await self._store.get_bytes(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def measure(store: Counted, action: Callable[[], Awaitable[object]]) -> tuple[float, int]:
    reads, cpu = store.reads, time.process_time()
    await action()
    return time.process_time() - cpu, store.reads - reads


async def run(root: Path) -> list[tuple[str, float, int]]:
    primary = open_store(f"file://{root}")
    store = Counted(primary)
    counted: Store = store  # type: ignore[assignment]
    rows = [
        (
            "reference: every record read",
            *await measure(store, lambda: project_records(counted, PROJECT)),
        )
    ]
    held = await read_project(counted, PROJECT, lambda record: record)
    one = await get_record(primary, PROJECT, f"{PROJECT}-1.5-{TAGS}.whl")
    assert one is not None
    await put_record(primary, dataclasses.replace(one, yanked=not one.yanked))
    changed = await measure(store, lambda: read_project(counted, PROJECT, lambda r: r, held))
    rows.append(("read_project, one record changed", *changed))
    again = await read_project(counted, PROJECT, lambda record: record, held)
    unchanged = await measure(store, lambda: read_project(counted, PROJECT, lambda r: r, again))
    rows.append(("read_project, nothing changed", *unchanged))
    rows.append(
        (
            "select one release (P==V)",
            *await measure(store, lambda: select(counted, f"{PROJECT}==1.5")),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "bench-catalog")
    args = parser.parse_args()
    write(args.store, args.files)
    print(f"{args.files:,} records of one project; {machine()}")
    rows = asyncio.run(run(args.store))
    reference = rows[0][1]
    for name, cpu, reads in rows:
        ratio = reference / max(cpu, 1e-6)
        print(f"{name:38} {cpu:7.2f} s CPU {reads:8,} reads  {ratio:7.1f}x less CPU")


if __name__ == "__main__":
    main()
