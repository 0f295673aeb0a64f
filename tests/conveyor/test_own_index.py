"""Spec rule 8: legacy URLs resolved from the project's own catalog, alone or via the edge."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from pythonhosted.catalog import record_key
from pythonhosted.config import ConveyorSettings, FilesSettings, Settings
from pythonhosted.conveyor import ConveyorMetrics, build_app, build_resolver, create_legacy_app
from pythonhosted.conveyor import sources as sources_module
from pythonhosted.conveyor.projectfiles import LegacyFile, ProjectFiles
from pythonhosted.conveyor.sources import OwnIndexSource
from pythonhosted.files.manage import delete
from pythonhosted.files.service import build_edge
from pythonhosted.files.upload import upload
from pythonhosted.samples import build_sdist, build_wheel
from pythonhosted.storage import open_store
from pythonhosted.web.server import running
from support.catalogs import CountingReads, put_catalog
from support.catalogs import record as catalog_record
from support.conveyor import ConveyorFactory
from support.edge import raw_request
from support.processes import wait_until

WHEEL = build_wheel("Demo_Pkg", "1.0")
SDIST = build_sdist("demo-pkg", "1.0")


@pytest.fixture
def primary(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A primary store with a wheel and an sdist uploaded; filename -> hashed path."""
    url = f"file://{tmp_path}/primary"
    store = open_store(url)
    paths = {}
    for name, data in (WHEEL, SDIST):
        paths[name] = asyncio.run(upload(store, name, data)).path
    return url, paths


def test_own_index_relative_targets(
    primary: tuple[str, dict[str, str]], conveyor: ConveyorFactory
) -> None:
    url, paths = primary
    wheel, sdist = WHEEL[0], SDIST[0]
    with conveyor(primary=url) as base:
        exact = httpx.get(f"{base}/packages/py3/d/demo-pkg/{wheel}")
        spelled = httpx.get(f"{base}/packages/source/D/Demo.Pkg/Demo_Pkg-1.0.0.tar.gz")
        wrong_python = httpx.get(f"{base}/packages/py2/d/demo-pkg/{wheel}")
        signature = httpx.get(f"{base}/packages/source/d/demo-pkg/{sdist}.asc")
        unknown = httpx.get(f"{base}/packages/source/n/nope/nope-1.0.tar.gz")
    assert (exact.status_code, exact.headers["location"]) == (302, paths[wheel])
    assert (spelled.status_code, spelled.headers["location"]) == (302, paths[sdist])
    assert wrong_python.headers["reason"] == "no file found"
    assert signature.headers["reason"] == "missing signature file"
    assert (unknown.status_code, unknown.headers["reason"]) == (404, "no file found")


def test_names_no_project_can_have_are_404(
    primary: tuple[str, dict[str, str]], conveyor: ConveyorFactory
) -> None:
    """A name outside PEP 508's rule is never looked up: 404, not the 503 the store's refusal
    of a newline or a 300-character name gave."""
    url, _ = primary
    names = ["d%0a", "d%01x", "d" * 300, "d%C3%A9", "d-"]
    with conveyor(primary=url) as base:
        answers = [
            raw_request(base, f"GET /packages/py3/d/{name}/demo_pkg-1.0-py3-none-any.whl HTTP/1.1")
            for name in names
        ]
        metrics = httpx.get(base + "/metrics").text
    for status, data in answers:
        assert (status, b"\r\nreason: no file found\r\n" in data) == (404, True)
    assert 'status="503"' not in metrics


def test_own_index_with_files_base_url_from_s3(s3_url: str, conveyor: ConveyorFactory) -> None:
    record = asyncio.run(upload(open_store(s3_url), *SDIST))
    with conveyor(index=s3_url, files_base_url="https://files.example/") as base:
        response = httpx.get(f"{base}/packages/source/d/demo-pkg/{SDIST[0]}")
    assert response.headers["location"] == "https://files.example" + record.path


def test_no_resolver_means_404(conveyor: ConveyorFactory) -> None:
    with conveyor() as base:
        response = httpx.get(f"{base}/packages/source/d/demo-pkg/{SDIST[0]}")
    assert response.status_code == 404


def test_files_edge_mounts_the_legacy_app(
    primary: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, paths = primary
    settings = Settings(
        data_dir=tmp_path / "data",
        files=FilesSettings(primary=url),
        conveyor=ConveyorSettings(),
    )
    resolver = build_resolver(settings, ConveyorMetrics())
    assert resolver is not None
    edge = build_edge(settings, legacy=create_legacy_app(resolver))
    with running(edge) as base:
        legacy = httpx.get(f"{base}/packages/source/d/demo-pkg/{SDIST[0]}")
        followed = httpx.get(f"{base}/packages/source/d/demo-pkg/{SDIST[0]}", follow_redirects=True)
        head = httpx.head(f"{base}/packages/py3/d/demo-pkg/{WHEEL[0]}")
    assert (legacy.status_code, legacy.headers["location"]) == (302, paths[SDIST[0]])
    assert legacy.headers["x-frame-options"] == "deny"
    assert (followed.status_code, followed.content) == (200, SDIST[1])
    assert (head.status_code, head.headers["location"]) == (302, paths[WHEEL[0]])
    assert resolver.metrics.tallies.by_part["legacy", 302] == 3


def test_hsts_behind_a_trusted_proxy(primary: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """Both doors to the legacy logic honour a trusted TLS terminator's X-Forwarded-Proto."""
    url, _ = primary
    https = {"X-Forwarded-Proto": "https"}
    hsts = "max-age=31536000; includeSubDomains; preload"
    trusted = Settings(
        data_dir=tmp_path / "data",
        files=FilesSettings(primary=url, trust_proxy_headers=True),
        conveyor=ConveyorSettings(trust_proxy_headers=True),
    )
    untrusted = Settings(data_dir=tmp_path / "data", files=FilesSettings(primary=url))
    legacy_path = f"/packages/source/d/demo-pkg/{SDIST[0]}"
    found = []
    for settings in (trusted, untrusted):
        conveyor_app = build_app(settings)
        edge = build_edge(settings, legacy=conveyor_app.legacy)
        with running(edge) as edge_url, running(conveyor_app) as docs_url:
            found.append(
                (
                    httpx.get(edge_url + legacy_path, headers=https).headers.get(
                        "strict-transport-security"
                    ),
                    httpx.get(docs_url + "/_health", headers=https).headers.get(
                        "strict-transport-security"
                    ),
                )
            )
    assert found == [(hsts, hsts), (None, None)]


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example/demo_pkg-2.0.tar.gz",
        "https://evil.example/demo_pkg-2.0.tar.gz",
        "javascript:alert(1)//demo_pkg-2.0.tar.gz",
        "/packages/../../evil/demo_pkg-2.0.tar.gz",
        "/packages//evil.example/demo_pkg-2.0.tar.gz",
        "/packages/ab/cd/ef/demo_pkg-2.0.tar.gz\r\nSet-Cookie: a=b",
        "/packages/ab/cd/ef/demo pkg-2.0.tar.gz",
        "/packages/ab\\..\\evil/demo_pkg-2.0.tar.gz",
        42,
    ],
)
def test_catalog_records_are_not_trusted_with_the_location(
    primary: tuple[str, dict[str, str]],
    conveyor: ConveyorFactory,
    caplog: pytest.LogCaptureFixture,
    path: object,
) -> None:
    """A catalog record ``files upload`` did not write (tampered, hand-made) never becomes a
    redirect; the project's other files still resolve."""
    url, paths = primary
    store = open_store(url)
    record = asyncio.run(upload(store, *build_sdist("demo-pkg", "2.0")))
    forged = {**orjson.loads(record.to_json()), "path": path}
    asyncio.run(store.put(record_key("demo-pkg", record.filename), orjson.dumps(forged)))
    with conveyor(primary=url, files_base_url="https://files.example") as base:
        forged_file = httpx.get(f"{base}/packages/source/d/demo-pkg/{record.filename}")
        good_file = httpx.get(f"{base}/packages/source/d/demo-pkg/{SDIST[0]}")
    assert (forged_file.status_code, forged_file.headers["reason"]) == (404, "no file found")
    assert "location" not in forged_file.headers
    assert good_file.headers["location"] == "https://files.example" + paths[SDIST[0]]
    reports = [record.getMessage() for record in caplog.records]
    key = record_key("demo-pkg", record.filename)
    expected = (
        f"catalog record {path!r} is not a files edge file; skipping it"
        if isinstance(path, str)  # not a string at all: the record is damaged, when read
        else f"catalog record {key} in {url} is damaged, left out: path is not str"
    )
    assert expected in reports


def test_a_malformed_catalog_record_is_left_out_and_named(
    primary: tuple[str, dict[str, str]],
    conveyor: ConveyorFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, the whole project answered 503 "Package index unavailable" for as long as one
    of its records was not JSON; now its other files resolve and the record is named."""
    url, paths = primary
    key = record_key("demo-pkg", "broken.tar.gz")
    asyncio.run(open_store(url).put(key, b"{not json"))
    with conveyor(primary=url, files_base_url="https://files.example") as base:
        response = httpx.get(f"{base}/packages/source/d/demo-pkg/{SDIST[0]}")
    assert response.headers["location"] == "https://files.example" + paths[SDIST[0]]
    assert any(
        f"catalog record {key} in {url} is damaged, left out: not JSON" in r.getMessage()
        for r in caplog.records
    )


def test_a_change_to_a_large_project_reads_only_the_records_that_changed(tmp_path: Path) -> None:
    """A nightly project takes an upload every few minutes: each used to make the next legacy
    lookup read every record of the project again (100,000 reads for 100,000 files)."""
    url = f"file://{tmp_path}/primary"
    store = open_store(url)
    asyncio.run(put_catalog(store, "nightly", 3_000))
    settings = Settings(
        data_dir=tmp_path / "data",
        files=FilesSettings(primary=url),
        conveyor=ConveyorSettings(cache_ttl=600),
    )
    resolver = build_resolver(settings, ConveyorMetrics())
    assert resolver is not None and isinstance(resolver.source, OwnIndexSource)
    counting = CountingReads(resolver.source.store)
    resolver.source.store = counting  # type: ignore[assignment]
    new = build_wheel("nightly", "2.0")

    def status(filename: str) -> int:
        return httpx.get(f"{base}/packages/py3/n/nightly/{filename}").status_code

    with running(build_edge(settings, legacy=create_legacy_app(resolver))) as base:
        assert status(catalog_record("nightly", 7).filename) == 302
        assert counting.reads == 3_000
        record = asyncio.run(upload(store, *new))
        wait_until(lambda: status(new[0]) == 302)
        assert counting.reads == 3_001
        asyncio.run(delete(store, None, [(record, record.path)]))
        wait_until(lambda: status(new[0]) == 404)
        assert status(catalog_record("nightly", 7).filename) == 302
        assert counting.reads == 3_001


def test_legacy_lookups_are_answered_while_a_large_project_is_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Indexing a 100,000-file project's files for lookups takes ~1 s of CPU, after each
    upload to it; on the event loop that held up every request. The indexing here waits until
    another project's lookup has been answered: on the loop, nothing is answered."""
    indexing, answered = threading.Event(), threading.Event()
    real = sources_module.ProjectFiles

    def held(files: Iterable[LegacyFile]) -> ProjectFiles:
        if not indexing.is_set():
            indexing.set()
            answered.wait(120)
        return real(files)

    monkeypatch.setattr(sources_module, "ProjectFiles", held)
    url = f"file://{tmp_path}/primary"
    for project, count in (("nightly", 500), ("other", 1)):
        asyncio.run(put_catalog(open_store(url), project, count))
    settings = Settings(data_dir=tmp_path / "data", files=FilesSettings(primary=url))
    resolver = build_resolver(settings, ConveyorMetrics())
    assert resolver is not None
    with (
        running(build_edge(settings, legacy=create_legacy_app(resolver))) as base,
        ThreadPoolExecutor(1) as pool,
    ):
        path = "/packages/py3/n/nightly/" + catalog_record("nightly", 7).filename
        big = pool.submit(httpx.get, base + path)
        assert indexing.wait(30)
        try:
            other = httpx.get(f"{base}/packages/py3/o/other/other-1.0-py3-none-any.whl")
        finally:
            answered.set()
        assert other.status_code == 302
        assert big.result().status_code == 302
