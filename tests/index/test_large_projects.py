"""A project with thousands of files that keeps taking uploads (a nightly build's): the index
reads the records that changed, not all of them again.

Each upload, yank or delete used to drop the project's cached records, and the next request
read every record again: 50,000 reads (16 s of CPU) per upload for a 50,000-file project, so
building it one upload at a time was quadratic. The TTL's expiry did the same once a minute.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from pythonhosted.catalog import FileRecord, get_record
from pythonhosted.files.manage import delete, set_yanked
from pythonhosted.files.upload import upload
from pythonhosted.index import app as index_app
from pythonhosted.index.app import IndexApp, IndexOptions
from pythonhosted.index.render import JSON_TYPE, project_json
from pythonhosted.samples import build_wheel
from pythonhosted.storage import open_store
from pythonhosted.web.server import running
from support.catalogs import CountingReads, put_catalog
from support.flood import fetch_all
from support.processes import wait_until

NEW = "nightly-2.0-py3-none-any.whl"


def _files(client: httpx.Client) -> dict[str, object]:
    page = client.get("/simple/nightly/", headers={"Accept": JSON_TYPE})
    assert page.status_code == 200
    return {entry["filename"]: entry["yanked"] for entry in page.json()["files"]}


def _store_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "s3":
        return str(request.getfixturevalue("s3_url"))
    return f"file://{tmp_path}/primary"


@pytest.mark.parametrize(("kind", "count"), [("directory", 3_000), ("s3", 500)])
def test_a_change_to_a_large_project_reads_only_the_records_that_changed(
    kind: str, count: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    primary = open_store(_store_url(kind, tmp_path, request))
    asyncio.run(put_catalog(primary, "nightly", count))
    store = CountingReads(primary)
    app = IndexApp(store, None, IndexOptions(cache_ttl=600))  # type: ignore[arg-type]
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert len(_files(client)) == count and store.reads == count

        def shows(check: Callable[[dict[str, object]], bool]) -> bool:
            return check(_files(client))

        asyncio.run(upload(primary, *build_wheel("nightly", "2.0")))
        wait_until(lambda: shows(lambda files: files.get(NEW) is False))
        assert store.reads == count + 1

        new = asyncio.run(get_record(primary, "nightly", NEW))
        assert new is not None
        asyncio.run(set_yanked(primary, [new], True, "broken"))
        wait_until(lambda: shows(lambda files: files.get(NEW) == "broken"))
        assert store.reads == count + 2

        asyncio.run(delete(primary, None, [(new, new.path)]))
        wait_until(lambda: shows(lambda files: NEW not in files))
        assert len(_files(client)) == count and store.reads == count + 2


def test_a_project_past_its_ttl_is_listed_again_not_read_again(tmp_path: Path) -> None:
    """Its page stays the same rendering too: the same ETag, so a conditional request is a 304."""
    primary = open_store(f"file://{tmp_path}/primary")
    asyncio.run(put_catalog(primary, "nightly", 1_000))
    store = CountingReads(primary)
    app = IndexApp(store, None, IndexOptions(cache_ttl=0.05))  # type: ignore[arg-type]
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        first = client.get("/simple/nightly/")
        etag = first.headers["etag"]

        def listed_again() -> bool:
            assert client.get("/simple/nightly/").status_code == 200
            return store.listings.count("catalog/nightly/") > 3

        wait_until(listed_again)
        again = client.get("/simple/nightly/", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert store.reads == 1_000


def test_other_requests_are_answered_while_a_large_page_renders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 100,000-file project's JSON page takes 1.5-3 s of CPU to render; rendered on the
    event loop it held up every request of the process. The rendering here waits until
    another project's page has been answered: on the loop, nothing is answered and it fails."""
    rendering, answered = threading.Event(), threading.Event()
    renders: list[str] = []

    def held(name: str, records: list[FileRecord], files_url: str) -> bytes:
        renders.append(name)
        rendering.set()
        answered.wait(120)
        return project_json(name, records, files_url)

    monkeypatch.setattr(index_app, "project_json", held)
    primary = open_store(f"file://{tmp_path}/primary")
    asyncio.run(put_catalog(primary, "nightly", 1_000))
    asyncio.run(put_catalog(primary, "other", 1))
    app = IndexApp(primary, None, IndexOptions(cache_ttl=600))
    with running(app.service()) as url, ThreadPoolExecutor(1) as pool:
        cold = [("/simple/nightly/", {"Accept": JSON_TYPE, "Accept-Encoding": "identity"})] * 200
        answers = pool.submit(asyncio.run, fetch_all(url, cold, concurrency=200))
        assert rendering.wait(30)
        try:
            other = httpx.get(url + "/simple/other/")  # times out at 60 s if held
        finally:
            answered.set()
        assert other.status_code == 200 and "other-1.0-py3-none-any.whl" in other.text
        pages = {answer.body for answer in answers.result(timeout=60)}
    assert len(pages) == 1 and len(orjson.loads(pages.pop())["files"]) == 1_000
    assert renders == ["nightly"]  # 200 concurrent requests for the cold page: one rendering
