"""Conveyor test helpers shared by the fixtures and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager

import orjson

from pythonhosted.storage import NotFound, open_store

# ``with conveyor(**conveyor_settings) as base_url``
ConveyorFactory = Callable[..., AbstractContextManager[str]]


def served_folder(url: str, project: str) -> str:
    """The store folder ``project``'s docs are served from: its pointer's site (written last
    by an upload, ``.sites/{project}/current``), else the layout older stores hold."""
    store = open_store(url)
    try:
        pointer = asyncio.run(store.get_bytes(f".sites/{project}/current"))
    except NotFound:
        return f"{project}/"
    return f".sites/{project}/{orjson.loads(pointer)['site']}/"


def served_files(url: str, project: str) -> dict[str, bytes]:
    """Name -> bytes of the files of ``project``'s site served now, read from the store."""
    store = open_store(url)
    folder = served_folder(url, project)

    async def read() -> dict[str, bytes]:
        listed = await store.list(folder)
        return {item.key[len(folder) :]: await store.get_bytes(item.key) for item in listed}

    return asyncio.run(read())
