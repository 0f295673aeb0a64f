"""Conveyor test helpers shared by the fixtures and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager

from pythonhosted.conveyor.sites import site_prefix
from pythonhosted.conveyor.upload import read_pointer
from pythonhosted.storage import open_store

# ``with conveyor(**conveyor_settings) as base_url``
ConveyorFactory = Callable[..., AbstractContextManager[str]]


def served_files(url: str, project: str) -> dict[str, bytes]:
    """Name -> bytes of the files of ``project``'s site served now (the pointer's, else the
    old layout's), read from the store."""
    store = open_store(url)

    async def read() -> dict[str, bytes]:
        pointer = await read_pointer(store, project)
        folder = site_prefix(project, pointer.site) if pointer else f"{project}/"
        listed = await store.list(folder)
        return {item.key[len(folder) :]: await store.get_bytes(item.key) for item in listed}

    return asyncio.run(read())
