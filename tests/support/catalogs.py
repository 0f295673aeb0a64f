"""Large catalogs for the tests, written the way the upload writes them but without building
and checking a distribution per file, and a store that counts the record reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pythonhosted.catalog import PREFIX, FileRecord, record_key
from pythonhosted.storage import Store
from pythonhosted.storage.stores import Listed


def record(project: str, number: int, tags: str = "py3-none-any") -> FileRecord:
    """The catalog record of a made-up wheel, ``{project}-1.{number}-{tags}.whl``, with every
    field the upload sets."""
    filename = f"{project}-1.{number}-{tags}.whl"
    return FileRecord(
        filename=filename,
        path=f"/packages/aa/bb/{'c' * 60}/{filename}",
        project=project,
        version=f"1.{number}",
        package_type="bdist_wheel",
        python_version="py3",
        size=1000 + number,
        sha256=f"{number:064x}",
        blake2b_256=f"{number:064x}",
        upload_time="2026-01-01T00:00:00.123456Z",
        requires_python=">=3.8",
        metadata_sha256=f"{number + 1:064x}",
        md5=f"{number:032x}",
        uploaded_via="pythonhosted/0.1.0",
    )


def write_catalog(root: Path, project: str, count: int) -> None:
    """``count`` records of one project, straight into a directory store's files."""
    folder = root / PREFIX / project
    folder.mkdir(parents=True)
    for number in range(count):
        made = record(project, number)
        (folder / f"{made.filename}.json").write_bytes(made.to_json())


async def put_catalog(store: Store, project: str, count: int, tags: str = "py3-none-any") -> None:
    """``count`` records of one project, through the store's API (any kind of store)."""
    limit = asyncio.Semaphore(32)

    async def put(number: int) -> None:
        made = record(project, number, tags)
        async with limit:
            await store.put(record_key(project, made.filename), made.to_json())

    await asyncio.gather(*(put(number) for number in range(count)))


class CountingReads:
    """A store that counts reads of catalog records and listings of them (everything else
    goes straight through)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reads = 0
        self.listings: list[str] = []
        self.listed = 0  # entries of those listings

    async def list(self, prefix: str = "", *, after: str | None = None) -> list[Listed]:
        found = await self._store.list(prefix, after=after)
        if prefix.startswith(PREFIX):
            self.listings.append(prefix)
            self.listed += len(found)
        return found

    async def get_bytes(self, key: str) -> bytes:
        if key.startswith(PREFIX):
            self.reads += 1
        return await self._store.get_bytes(key)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)
