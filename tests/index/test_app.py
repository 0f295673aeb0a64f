"""The simple index (simple-index.md rules 1-6), black-box over HTTP."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import http.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest

from pythonhosted.config import FilesSettings, IndexSettings, Settings
from pythonhosted.files.upload import upload
from pythonhosted.index.app import IndexApp, IndexOptions
from pythonhosted.index.service import build_app as build_index
from pythonhosted.samples import build_wheel
from pythonhosted.storage import open_store
from pythonhosted.web.server import running
from support.catalogs import put_catalog, write_catalog
from support.edge import SAMPLES, metadata_of, raw_request, seed

WHEEL = SAMPLES["wheel"]
SDIST = SAMPLES["sdist"]
JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"


@pytest.fixture
def index(tmp_path: Path) -> Iterator[str]:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    other = build_wheel("Other", "2.0", requires_python=">=3.9,<4")
    asyncio.run(upload(open_store(primary), *other))
    settings = Settings(
        data_dir=tmp_path / "data",
        files=FilesSettings(primary=primary, logs=f"file://{tmp_path}/logs"),
        index=IndexSettings(files_url="https://files.example"),
    )
    with running(build_index(settings)) as url:
        yield url


def test_project_list(index: str) -> None:
    html = httpx.get(index + "/simple/")
    as_json = httpx.get(index + "/simple/", headers={"Accept": JSON})
    assert html.headers["content-type"] == "text/html"
    assert '<a href="/simple/demo-pkg/">demo-pkg</a><br>' in html.text
    assert '<a href="/simple/other/">other</a><br>' in html.text
    assert as_json.json() == {
        "meta": {"api-version": "1.1"},
        "projects": [{"name": "demo-pkg"}, {"name": "other"}],
    }


def test_project_page_json(index: str) -> None:
    response = httpx.get(index + "/simple/demo-pkg/", headers={"Accept": JSON})
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert response.headers["vary"] == "Accept, Accept-Encoding"
    assert response.headers["cache-control"] == "max-age=600, public"
    page = response.json()
    assert page["meta"] == {"api-version": "1.1"}
    assert page["name"] == "demo-pkg"
    assert page["versions"] == ["1.0"]
    by_name = {f["filename"]: f for f in page["files"]}
    wheel = by_name[WHEEL.filename]
    metadata_sha = hashlib.sha256(metadata_of(WHEEL)).hexdigest()
    assert wheel == {
        "filename": WHEEL.filename,
        "url": "https://files.example" + WHEEL.path,
        "hashes": {"sha256": hashlib.sha256(WHEEL.data).hexdigest()},
        "requires-python": ">=3.8",
        "size": len(WHEEL.data),
        "upload-time": wheel["upload-time"],
        "yanked": False,
        "core-metadata": {"sha256": metadata_sha},
        "dist-info-metadata": {"sha256": metadata_sha},
    }
    assert wheel["upload-time"].endswith("Z")
    assert "core-metadata" not in by_name[SDIST.filename]
    # From the sdist's PKG-INFO, as PyPI reports it for every file of a release.
    assert by_name[SDIST.filename]["requires-python"] == ">=3.8"


def test_project_page_html(index: str) -> None:
    response = httpx.get(index + "/simple/other/", headers={"Accept": "text/html"})
    assert response.headers["content-type"] == "text/html"
    [link] = [line.strip() for line in response.text.splitlines() if "<a " in line]
    assert 'data-requires-python="&gt;=3.9,&lt;4"' in link
    assert 'data-core-metadata="sha256=' in link
    assert 'data-dist-info-metadata="sha256=' in link
    assert link.startswith('<a href="https://files.example/packages/')
    assert "#sha256=" in link
    assert link.endswith(">other-2.0-py3-none-any.whl</a><br>")


@pytest.mark.parametrize(
    ("accept", "query", "expected"),
    [
        (None, "", "text/html"),
        ("*/*", "", "text/html"),
        (HTML, "", HTML),
        (f"{JSON};q=0.5, {HTML};q=0.9", "", HTML),
        (f"text/html;q=0.1, {JSON}", "", JSON),
        ("application/*", "", JSON),
        (JSON, "?format=" + quote(HTML), HTML),
        # as PEP 691 writes it, its "+" not encoded: form decoding reads a space
        (None, "?format=" + JSON, JSON),
        (JSON, "?format=" + HTML, HTML),
        # weights RFC 9110 does not allow are 0: nan compared false with every other weight
        (f"{JSON};q=nan, {HTML}", "", HTML),
        (f"{JSON};q=inf, {HTML};q=0.5", "", HTML),
        (f"{JSON};q=1e9, {HTML};q=0.5", "", HTML),
        (f"{JSON};q=0.5, {HTML};q=1.000", "", HTML),
        (f"{JSON};q=1.0001, {HTML};q=0.001", "", HTML),
    ],
)
def test_negotiation(index: str, accept: str | None, query: str, expected: str) -> None:
    headers = {"Accept": accept} if accept else {}
    response = httpx.get(index + "/simple/demo-pkg/" + query, headers=headers)
    assert (response.status_code, response.headers["content-type"]) == (200, expected)


def test_not_acceptable(index: str) -> None:
    response = httpx.get(index + "/simple/demo-pkg/", headers={"Accept": "image/png"})
    assert response.status_code == 406


def test_normalisation_redirects(index: str) -> None:
    odd = httpx.get(index + "/simple/Demo_Pkg/")
    bare = httpx.get(index + "/simple/demo-pkg")
    root = httpx.get(index + "/simple")
    assert (odd.status_code, odd.headers["location"]) == (301, "/simple/demo-pkg/")
    assert (bare.status_code, bare.headers["location"]) == (301, "/simple/demo-pkg/")
    assert (root.status_code, root.headers["location"]) == (301, "/simple/")


def test_unknown_project_and_methods(index: str) -> None:
    assert httpx.get(index + "/simple/nothing-here/").status_code == 404
    assert httpx.post(index + "/simple/demo-pkg/").status_code == 405
    assert httpx.get(index + "/elsewhere").status_code == 404


@pytest.mark.parametrize(
    "name",
    [
        "%00",
        "a%0ab",
        "A%0d%0aSet-Cookie:%20x=1",  # was put into a redirect's Location: a 500
        "Caf%C3%A9",  # not ASCII: was redirected with raw UTF-8 in Location
        "-leading",
        "a" * 300,  # longer than a key's segment: was a 503 from the store
    ],
)
def test_names_no_project_can_have_are_404(index: str, name: str) -> None:
    """A name outside PEP 508's rule names no project: 404, never a redirect or a store error."""
    for path in (f"/simple/{name}/", f"/simple/{name}"):
        status, data = raw_request(index, f"GET {path} HTTP/1.1")
        head, _, body = data.partition(b"\r\n\r\n")
        assert (status, body) == (404, b"Not Found\n"), path
        assert b"location" not in head.lower()
    assert httpx.get(index + "/_health").text == "OK\n"


def test_without_a_files_url_links_are_root_relative_whatever_the_host(tmp_path: Path) -> None:
    """Links built from the request's Host would let one request with a forged Host poison
    a shared cache that does not key on it (the page is ``public``)."""
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    settings = Settings(data_dir=tmp_path / "data", files=FilesSettings(primary=primary))
    with running(build_index(settings)) as url:
        pages = [
            httpx.get(url + "/simple/demo-pkg/", headers={"Host": host, "Accept": accept})
            for host in ("evil.example", "files.example")
            for accept in (HTML, JSON)
        ]
    assert [page.status_code for page in pages] == [200] * 4
    assert pages[0].content == pages[2].content and pages[1].content == pages[3].content
    assert f'href="{WHEEL.path}#sha256=' in pages[0].text
    assert {file["url"] for file in pages[1].json()["files"]} == {WHEEL.path, SDIST.path}


def test_etag_and_304(index: str) -> None:
    first = httpx.get(index + "/simple/demo-pkg/")
    again = httpx.get(index + "/simple/demo-pkg/", headers={"If-None-Match": first.headers["etag"]})
    as_json = httpx.get(index + "/simple/demo-pkg/", headers={"Accept": JSON})
    assert again.status_code == 304
    assert as_json.headers["etag"] != first.headers["etag"]


@dataclass
class _Raw:
    status: int
    headers: dict[str, str]
    body: bytes


def _fetch(url: str, method: str, path: str, headers: dict[str, str]) -> _Raw:
    """The response as sent (httpx would decode the gzip)."""
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=60)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        fields = {name.lower(): value for name, value in response.getheaders()}
        return _Raw(response.status, fields, response.read())
    finally:
        connection.close()


def test_pages_go_gzipped_to_clients_that_take_it(tmp_path: Path) -> None:
    """A 5,000-file project: its page goes gzipped to a client that accepts
    gzip (pip and uv do), with a validator of its own; a client that does not, and a page
    too small to gain, get the page as it is."""
    primary = open_store(f"file://{tmp_path}/primary")
    asyncio.run(put_catalog(primary, "nightly", 5_000))
    asyncio.run(put_catalog(primary, "tiny", 1))
    app = IndexApp(primary, None, IndexOptions(cache_ttl=600))
    gzip_only = {"Accept": JSON, "Accept-Encoding": "gzip"}
    identity = {"Accept": JSON, "Accept-Encoding": "identity"}
    with running(app.service()) as url:
        plain = _fetch(url, "GET", "/simple/nightly/", identity)
        packed = _fetch(url, "GET", "/simple/nightly/", gzip_only)
        head = _fetch(url, "HEAD", "/simple/nightly/", gzip_only)
        again = _fetch(
            url, "GET", "/simple/nightly/", {**gzip_only, "If-None-Match": packed.headers["etag"]}
        )
        crossed = _fetch(
            url, "GET", "/simple/nightly/", {**identity, "If-None-Match": packed.headers["etag"]}
        )
        refused = _fetch(
            url, "GET", "/simple/nightly/", {"Accept": JSON, "Accept-Encoding": "gzip;q=0, br"}
        )
        tiny = _fetch(url, "GET", "/simple/tiny/", gzip_only)
    assert (plain.status, packed.status, head.status) == (200, 200, 200)
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(packed.body) == plain.body
    assert len(orjson.loads(plain.body)["files"]) == 5_000
    assert len(packed.body) < len(plain.body) // 2
    assert packed.headers["etag"] == plain.headers["etag"][:-1] + '-gzip"'
    assert head.headers["content-length"] == str(len(packed.body)) and head.body == b""
    assert (again.status, crossed.status) == (304, 200)
    assert crossed.body == plain.body
    assert "content-encoding" not in refused.headers and refused.body == plain.body
    assert "content-encoding" not in tiny.headers and len(tiny.body) < 1_400
    for answer in (plain, packed, tiny):
        assert answer.headers["vary"] == "Accept, Accept-Encoding"


def test_each_project_request_is_logged(tmp_path: Path) -> None:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    settings = Settings(
        data_dir=tmp_path / "data",
        files=FilesSettings(primary=primary, logs=f"file://{tmp_path}/logs"),
    )
    with running(build_index(settings)) as url:
        httpx.get(url + "/simple/demo-pkg/", headers={"User-Agent": "pip/24.0 {}"})
        httpx.get(url + "/simple/demo-pkg/?x=1", headers={"User-Agent": "uv/0.5.0"})
        httpx.get(url + "/simple/")  # the root page is not a project request
        httpx.head(url + "/simple/demo-pkg/")
    batches = sorted((tmp_path / "logs" / "simple").rglob("*.log.gz"))
    lines = [
        line
        for batch in batches
        for line in gzip.decompress(batch.read_bytes()).decode().splitlines()
    ]
    assert [line.split("|")[0::3] for line in lines] == [
        ["simple", "/simple/demo-pkg/", "", "pip/24.0 {}"],
        ["simple", "/simple/demo-pkg/", "", "uv/0.5.0"],
    ]
    assert [line.split("|")[4:9] for line in lines] == [["(null)", "(null)", "", "", ""]] * 2


def test_damaged_records_are_left_out_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record cut mid-write (a full disk, a store without atomic writes) or overwritten:
    the project's page answered 500 for as long as one stayed. 100 damaged records of five
    kinds among 1,000: the 900 others are served, each damaged one is named in the log."""
    write_catalog(tmp_path / "primary", "big", 1000)
    folder = tmp_path / "primary" / "catalog" / "big"
    damages = [
        lambda data: data[: len(data) // 2],  # cut mid-record
        lambda data: b"\x00\xff" + data,  # garbage
        lambda data: b"[]",  # JSON, not a record
        lambda data: b'{"filename": "x"}',  # fields missing
        lambda data: data.replace(b'"size":', b'"size":"big","was":'),  # a wrong type
    ]
    damaged = sorted(folder.iterdir())[::10]
    for n, path in enumerate(damaged):
        path.write_bytes(damages[n % len(damages)](path.read_bytes()))
    settings = Settings(
        data_dir=tmp_path / "data", files=FilesSettings(primary=f"file://{tmp_path}/primary")
    )
    with running(build_index(settings)) as url:
        for _ in range(2):  # and again, from the cache
            page = httpx.get(url + "/simple/big/", headers={"Accept": JSON})
            assert page.status_code == 200
            served = {file["filename"] for file in page.json()["files"]}
            assert served == {p.name.removesuffix(".json") for p in folder.iterdir()} - {
                p.name.removesuffix(".json") for p in damaged
            }
            assert len(served) == 900
    named = {r.args[0] for r in caplog.records if "is damaged, left out" in r.getMessage()}
    assert named == {f"catalog/big/{p.name}" for p in damaged}
