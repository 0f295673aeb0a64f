"""``docs upload`` replaces a site at once: killed uploads, uploads racing, readers meanwhile.

Readers must see the old site or a new one whole, a kill -9 at any point must leave the old
site served, and the folders such uploads leave must go with a later upload.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.config import ConveyorSettings
from pythonhosted.conveyor.bundle import UploadLimits
from pythonhosted.conveyor.upload import retention_of, upload_docs
from pythonhosted.storage import (
    COMMAND_TIMEOUTS,
    DirectoryStore,
    NotFound,
    StoreUnavailable,
    open_store,
)
from support.conveyor import ConveyorFactory, served_files, served_folder
from support.flood import fetch_all
from support.processes import spawn, wait_until

# Pages of a site: fewer on moto, which takes a few milliseconds of CPU per request.
PAGES = {"file": 600, "s3": 80}


def site(version: str, pages: int, extra: str = "") -> dict[str, bytes]:
    files = {f"p{number:04d}.html": f"{version} {number}".encode() for number in range(pages)}
    files.update({f"{extra}{number}.css": version.encode() for number in range(pages // 4)})
    files["index.html"] = f"{version} front".encode()
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def upload(store_url: str, source: Path, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(
        main, ["docs", "upload", "--store", store_url, "proj", str(source)], env=env
    )
    assert result.exit_code == 0, result.output
    return result.output


STALLED_UPLOAD = str(Path(__file__).parents[1] / "support" / "stalled_upload.py")


def all_keys(store_url: str) -> list[str]:
    return [item.key for item in asyncio.run(open_store(store_url).list())]


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int]:
    """A docs store's URL, and how many pages a site of the test has there."""
    if request.param == "file":
        return f"file://{tmp_path}/docs", PAGES["file"]
    return request.getfixturevalue("s3_url"), PAGES["s3"]


def test_a_killed_upload_leaves_the_old_site_served(store: tuple[str, int], tmp_path: Path) -> None:
    store_url, pages = store
    old, new = site("old", pages), site("new", pages, extra="new")
    upload(store_url, write_tree(tmp_path / "old", old))
    source = write_tree(tmp_path / "new", new)
    opened = open_store(store_url)
    old_folder = served_folder(store_url, "proj")

    async def new_file_stored() -> bool:
        try:  # the old layout wrote in place, assets (new0.css first) before pages
            await opened.info("proj/new0.css")
            return True
        except NotFound:
            pass
        folders = set(await opened.list_names(".sites/proj/")) - {"current"}
        return any(f".sites/proj/{folder}/" != old_folder for folder in folders)

    command = ["docs", "upload", "--store", store_url, "proj", str(source)]
    process = spawn([sys.executable, STALLED_UPLOAD, *command])
    # Killed once the new site's first file is stored: the upload is still writing (its
    # later writes wait forever, so a loaded machine cannot let it end first).
    wait_until(lambda: asyncio.run(new_file_stored()), interval=0.01)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert served_files(store_url, "proj") == old

    # The next upload serves its site, and removes the killed one's folder and the replaced
    # site once their grace periods are over (here at once).
    newest = site("newest", pages)
    quick = {
        "PYTHONHOSTED_CONVEYOR__DOCS_KEEP_REPLACED": "0",
        "PYTHONHOSTED_CONVEYOR__DOCS_KEEP_UNFINISHED": "0",
    }
    output = upload(store_url, write_tree(tmp_path / "newest", newest), env=quick)
    assert output.startswith(f"proj: {len(newest)} files written, ")
    assert served_files(store_url, "proj") == newest
    folder = served_folder(store_url, "proj")
    assert sorted(all_keys(store_url)) == sorted(
        [".sites/proj/current", *(folder + name for name in newest)]
    )


class FailingStore(DirectoryStore):
    """A local store whose puts fail after the first ``good`` ones (a disk filling up)."""

    def __init__(self, url: str, good: int) -> None:
        super().__init__(url, Path(url.removeprefix("file://")))
        self.good = good

    async def put(self, key: str, data: bytes, **options: Any) -> None:
        if self.good <= 0:
            raise StoreUnavailable(f"{self.label}: no space left on device")
        self.good -= 1
        await super().put(key, data, **options)


def test_a_failed_upload_removes_what_it_wrote(tmp_path: Path) -> None:
    store_url, pages = f"file://{tmp_path}/docs", PAGES["file"]
    old = site("old", pages)
    upload(store_url, write_tree(tmp_path / "old", old))
    before = sorted(all_keys(store_url))
    source = write_tree(tmp_path / "new", site("new", pages, extra="new"))
    settings = ConveyorSettings()
    limits, retention = UploadLimits.from_settings(settings), retention_of(settings)
    failing = FailingStore(store_url, good=pages // 2)
    with pytest.raises(StoreUnavailable, match="no space left on device"):
        asyncio.run(upload_docs(failing, "proj", source, limits, retention))
    assert served_files(store_url, "proj") == old
    assert sorted(all_keys(store_url)) == before


def test_racing_uploads_end_with_one_whole_site_and_readers_never_miss(
    store: tuple[str, int], tmp_path: Path, conveyor: ConveyorFactory
) -> None:
    """Two uploads of one project at once (in one event loop, so they interleave), while
    readers read every page both sites have."""
    store_url, pages = store
    pages //= 4
    old = site("old", pages)
    upload(store_url, write_tree(tmp_path / "old", old))
    sites = {name: site(name, pages, extra=name) for name in ("A", "B")}
    sources = {name: write_tree(tmp_path / name, files) for name, files in sites.items()}
    paths = [f"/proj/p{number:04d}.html" for number in range(pages)]
    settings = ConveyorSettings()
    limits, retention = UploadLimits.from_settings(settings), retention_of(settings)
    seen: list[tuple[int, bytes]] = []

    async def race(base: str) -> None:
        opened = open_store(store_url, COMMAND_TIMEOUTS)  # as `docs upload` opens it
        uploads = asyncio.gather(
            *(upload_docs(opened, "proj", source, limits, retention) for source in sources.values())
        )
        while not uploads.done():
            seen.extend((answer.status, answer.body) for answer in await fetch_all(base, paths))
        await uploads

    with conveyor(docs=store_url) as base:
        asyncio.run(race(base))
    assert len(seen) >= len(paths)
    assert {status for status, _ in seen} == {200}
    assert {body.split(b" ")[0] for _, body in seen} <= {b"old", b"A", b"B"}
    assert served_files(store_url, "proj") in list(sites.values())


def test_old_layout_is_served_until_replaced_then_removed(
    store: tuple[str, int], tmp_path: Path, conveyor: ConveyorFactory
) -> None:
    """Sites stored before pointers existed (``{project}/{path}``) keep being served; the
    first upload replaces them and a later one removes them after the grace period."""
    store_url = store[0]
    legacy = {"index.html": b"legacy front", "guide/index.html": b"legacy guide"}
    for name, data in legacy.items():
        asyncio.run(open_store(store_url).put(f"proj/{name}", data))
    assert served_files(store_url, "proj") == legacy
    with conveyor(docs=store_url) as base:
        assert httpx.get(base + "/proj/guide/").content == b"legacy guide"
        upload(store_url, write_tree(tmp_path / "v1", {"index.html": b"v1"}))
        wait_until(lambda: httpx.get(base + "/proj/").content == b"v1")
        assert httpx.get(base + "/proj/guide/").status_code == 404
    assert served_files(store_url, "proj") == {"index.html": b"v1"}
    assert len(all_keys(store_url)) == 2 + 2  # the old layout stays for readers a while
    quick = {"PYTHONHOSTED_CONVEYOR__DOCS_KEEP_REPLACED": "0"}
    output = upload(store_url, write_tree(tmp_path / "v2", {"index.html": b"v2"}), env=quick)
    assert output == "proj: 1 files written, 3 old files removed\n"
    assert [key for key in all_keys(store_url) if not key.startswith(".sites/")] == []
