"""Docs hosting (spec rules 9-15) over real HTTP, from a local directory and from S3 (moto)."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import lzma
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pythonhosted.conveyor.redirects import REDIRECTS_KEY
from pythonhosted.storage import open_store
from support.conveyor import ConveyorFactory
from support.edge import raw_request
from support.processes import wait_until

BIG = os.urandom(600_000)
SITE = {
    "index.html": b"<h1>front page</h1>",
    "secret.txt": b"outside every project",
    "proj/index.html": b"<h1>proj</h1>",
    "proj/guide/index.html": b"<h1>guide</h1>",
    "proj/_static/site.css": b"body {}",
    "proj/_static/app.js": b"let x = 1;",
    "proj/_static/logo.svg": b"<svg/>",
    "proj/_static/logo.png": b"\x89PNG\r\n",
    "proj/notes.txt": b"plain",
    "proj/objects.inv": b"\x00binary",
    "proj/archive.tar.gz": gzip.compress(b"a tar archive, say" * 100),
    "proj/data.json.gz": gzip.compress(b'{"a": 1}'),
    "proj/logo.svgz": gzip.compress(b"<svg/>"),
    "proj/dump.bz2": bz2.compress(b"bzip2 bytes"),
    "proj/src.tar.xz": lzma.compress(b"xz bytes"),
    "proj/app.js.br": b"\x8b\x02\x80brotli bytes\x03",
    "proj/data.zst": b"\x28\xb5\x2f\xfdzstd bytes",
    "proj/big.bin": BIG,
    "other/index.html": b"<h1>other</h1>",
}
SECURITY = {
    "x-frame-options": "deny",
    "x-xss-protection": "1; mode=block",
    "x-content-type-options": "nosniff",
    "x-permitted-cross-domain-policies": "none",
}


def put_all(url: str, objects: dict[str, bytes]) -> None:
    store = open_store(url)

    async def go() -> None:
        for key, data in objects.items():
            await store.put(key, data)

    asyncio.run(go())


@pytest.fixture(params=["file", "s3"])
def docs_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = (
        f"file://{tmp_path}/site" if request.param == "file" else request.getfixturevalue("s3_url")
    )
    put_all(url, SITE)
    return url


@pytest.fixture
def site(docs_store: str, conveyor: ConveyorFactory) -> Iterator[str]:
    with conveyor(docs=docs_store) as url:
        yield url


def test_front_page_get_and_head(site: str) -> None:
    page = httpx.get(site + "/")
    head = httpx.head(site + "/")
    assert (page.status_code, page.content) == (200, SITE["index.html"])
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    for name, value in SECURITY.items():
        assert page.headers[name] == value
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(SITE["index.html"]))
    assert head.headers["etag"] == page.headers["etag"]


def test_front_page_absent_is_404(conveyor: ConveyorFactory) -> None:
    with conveyor() as url:
        assert httpx.get(url + "/").status_code == 404
        assert httpx.head(url + "/").status_code == 404


def test_project_and_directory_resolution(site: str) -> None:
    bare = httpx.get(site + "/proj?x=1")
    assert (bare.status_code, bare.headers["location"]) == (301, "/proj/")
    index = httpx.get(site + "/proj/")
    assert (index.status_code, index.content) == (200, SITE["proj/index.html"])
    directory = httpx.get(site + "/proj/guide")
    assert (directory.status_code, directory.headers["location"]) == (301, "/proj/guide/")
    assert httpx.head(site + "/proj/guide").status_code == 301
    guide = httpx.get(site + "/proj/guide/")
    assert guide.content == SITE["proj/guide/index.html"]
    assert httpx.get(site + "/proj/missing").status_code == 404
    assert httpx.get(site + "/proj/missing/").status_code == 404
    assert httpx.get(site + "/nothing/").status_code == 404
    assert httpx.get(site + "/proj/notes.txt/").status_code == 404


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("proj/index.html", "text/html; charset=utf-8"),
        ("proj/_static/site.css", "text/css; charset=utf-8"),
        ("proj/_static/app.js", "application/javascript; charset=utf-8"),
        ("proj/_static/logo.svg", "image/svg+xml"),
        ("proj/_static/logo.png", "image/png"),
        ("proj/notes.txt", "text/plain; charset=utf-8"),
        ("proj/objects.inv", "application/octet-stream"),
        # Compressed files are the bytes they are: never a Content-Encoding, or clients
        # would save the unpacked bytes under the compressed name.
        ("proj/archive.tar.gz", "application/gzip"),
        ("proj/data.json.gz", "application/gzip"),
        ("proj/logo.svgz", "application/gzip"),
        ("proj/dump.bz2", "application/x-bzip2"),
        ("proj/src.tar.xz", "application/x-xz"),
        ("proj/app.js.br", "application/x-brotli"),
        ("proj/data.zst", "application/zstd"),
    ],
)
def test_content_types(site: str, path: str, content_type: str) -> None:
    # httpx unpacks any Content-Encoding it is sent, as browsers and curl --compressed do.
    accept = {"accept-encoding": "gzip, deflate, br, zstd"}
    response = httpx.get(f"{site}/{path}", headers=accept)
    head = httpx.head(f"{site}/{path}", headers=accept)
    assert response.status_code == 200
    for answer in (response, head):
        assert answer.headers["content-type"] == content_type
        assert "content-encoding" not in answer.headers
    assert response.content == SITE[path]
    assert response.headers["content-length"] == str(len(SITE[path]))


def test_large_bodies_stream_whole(site: str) -> None:
    response = httpx.get(site + "/proj/big.bin")
    assert response.headers["content-length"] == str(len(BIG))
    assert response.content == BIG


def test_ranges_as_on_the_files_edge(site: str) -> None:
    """The shared object responder serves docs too: small ranges of a large local file by
    pread, of a small one from memory, and If-Range keeps a range to the same version."""
    big = f"{site}/proj/big.bin"
    tail = httpx.get(big, headers={"Range": "bytes=-100"})
    middle = httpx.get(big, headers={"Range": "bytes=1000-1999"})
    page = httpx.get(f"{site}/proj/notes.txt", headers={"Range": "bytes=1-3"})
    etag = httpx.head(big).headers["etag"]
    same = httpx.get(big, headers={"Range": "bytes=0-9", "If-Range": etag})
    other = httpx.get(big, headers={"Range": "bytes=0-9", "If-Range": '"older"'})
    beyond = httpx.get(big, headers={"Range": f"bytes={len(BIG)}-"})
    assert (tail.status_code, tail.content) == (206, BIG[-100:])
    assert tail.headers["content-range"] == f"bytes {len(BIG) - 100}-{len(BIG) - 1}/{len(BIG)}"
    assert (middle.status_code, middle.content) == (206, BIG[1000:2000])
    assert (page.status_code, page.content) == (206, b"lai")
    assert (same.status_code, same.content) == (206, BIG[:10])
    assert (other.status_code, other.content) == (200, BIG)
    assert (beyond.status_code, beyond.headers["content-range"]) == (416, f"bytes */{len(BIG)}")
    assert SECURITY.items() <= beyond.headers.items()


def test_conditional_get(site: str) -> None:
    first = httpx.get(site + "/proj/")
    again = httpx.get(site + "/proj/", headers={"If-None-Match": first.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")


def test_dates_no_calendar_holds_are_not_dates(site: str) -> None:
    """If-Modified-Since and If-Range dates past what a datetime holds were a 500 each."""
    big = f"{site}/proj/big.bin"
    for date in ("Mon, 01 Jan 99999999999 00:00:00 GMT", "Mon, 01 Jan 2000 00:00:00 +99999999999"):
        since = httpx.get(big, headers={"If-Modified-Since": date})
        ranged = httpx.get(big, headers={"Range": "bytes=0-9", "If-Range": date})
        assert (since.status_code, since.content) == (200, BIG)
        assert (ranged.status_code, ranged.content) == (200, BIG)


@pytest.mark.parametrize(
    "target",
    [
        "/proj/../secret.txt",
        "/proj/%2e%2e/secret.txt",
        "/proj/%2E%2E/other/index.html",
        "/proj/..%2fsecret.txt",
        "/proj%2f..%2fsecret.txt",
        "/proj/%2fsecret.txt",
        "/proj/%5c..%5csecret.txt",
        "/proj/notes.txt%00.html",
        "/proj/./notes.txt",
        "/proj//notes.txt",
        "/%2e%2e/secret.txt",
        "/..",
        "/.meta/proj/notes.txt.json",
        "/proj/%ff",
    ],
)
def test_traversal_attempts_are_404(site: str, target: str) -> None:
    for method in ("GET", "HEAD"):
        status, data = raw_request(site, f"{method} {target} HTTP/1.1")
        assert status == 404, data
        assert b"outside every project" not in data


def test_names_no_store_can_hold_are_404(site: str) -> None:
    """A name longer than a file system's (255 bytes) or with a control character names no
    page: 404 as for any missing page, not a 503 that says the store failed."""
    targets = [
        f"/proj/{'a' * 300}.html",
        f"/{'p' * 300}/",
        f"/{'p' * 300}/index.html",
        f"/proj/{'%C3%A9' * 128}.html",
        "/proj/a%0ab.html",
        "/proj%01/",
        "/proj/" + "/".join(["d" * 200] * 6),  # longer than any store's longest key
    ]
    for target in targets:
        status, data = raw_request(site, f"GET {target} HTTP/1.1")
        assert (status, data.endswith(b"\r\n\r\nNot Found\n")) == (404, True), target
    assert httpx.get(site + "/_health").status_code == 200


def test_other_methods_are_405(site: str) -> None:
    response = httpx.post(site + "/proj/")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, HEAD")


def test_health(site: str) -> None:
    for path in ("/_health", "/_health/"):
        assert httpx.get(site + path).status_code == 200
        assert httpx.head(site + path).status_code == 200


def metric(base: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", httpx.get(base + "/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_redirect_table(docs_store: str, conveyor: ConveyorFactory) -> None:
    put_all(
        docs_store,
        {
            REDIRECTS_KEY: b'{"project_name": "proj", "base_uri": "https://proj.example/en", '
            b'"include_path": true}\n\n'
            b'{"project_name": "other", "base_uri": "https://other.example", '
            b'"include_path": false}\n'
        },
    )
    with conveyor(docs=docs_store, redirects_reload_interval=0.1) as base:
        with_path = httpx.get(base + "/proj/guide/page.html?q=1")
        assert (with_path.status_code, with_path.headers["location"]) == (
            302,
            "https://proj.example/en/guide/page.html",
        )
        root = httpx.get(base + "/proj/")
        assert root.headers["location"] == "https://proj.example/en/"
        plain = httpx.head(base + "/other/deep/page.html")
        assert (plain.status_code, plain.headers["location"]) == (302, "https://other.example")
        assert httpx.get(base + "/proj").headers["location"] == "/proj/"
        assert metric(base, "conveyor_redirect_table_entries") == 2

        # An edit is picked up by the next reload.
        put_all(
            docs_store,
            {
                REDIRECTS_KEY: b'{"project_name": "other", "base_uri": "https://moved.example", '
                b'"include_path": false}\n'
            },
        )
        wait_until(lambda: httpx.get(base + "/proj/").status_code == 200)
        assert httpx.get(base + "/other/").headers["location"] == "https://moved.example"
        reloads = metric(base, "conveyor_redirect_table_reloads_total")
        assert reloads == 2

        # A malformed file keeps the table in service and is reported.
        put_all(docs_store, {REDIRECTS_KEY: b'{"project_name": "other"}\nnot json\n'})
        wait_until(lambda: metric(base, "conveyor_redirect_table_current") == 0)
        assert metric(base, 'conveyor_redirect_table_failures_total{reason="malformed"}') == 1
        assert httpx.get(base + "/other/").headers["location"] == "https://moved.example"
        assert httpx.get(base + "/proj/").status_code == 200

        # So does a missing one.
        asyncio.run(open_store(docs_store).delete(REDIRECTS_KEY))
        wait_until(
            lambda: metric(base, 'conveyor_redirect_table_failures_total{reason="missing"}') > 0
        )
        assert httpx.get(base + "/other/").headers["location"] == "https://moved.example"
        assert metric(base, "conveyor_redirect_table_reloads_total") == reloads


def test_metrics_count_requests_by_part(site: str) -> None:
    httpx.get(site + "/proj/")
    httpx.get(site + "/nope/")
    text = httpx.get(site + "/metrics").text
    assert 'conveyor_requests_total{part="docs",status="200"} 1.0' in text
    assert 'conveyor_requests_total{part="docs",status="404"} 1.0' in text
