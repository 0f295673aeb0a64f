"""The files edge, rule by rule (files-edge.md), black-box over real HTTP.

Rules about stored objects run against file, S3 (moto) and GCS (fake-gcs-server) primaries;
rules about the request alone run against a local primary.
"""

from __future__ import annotations

import httpx
import pytest

from support.edge import SAMPLES, EdgeFactory, metadata_of

WHEEL = SAMPLES["wheel"]
SDIST = SAMPLES["sdist"]
SECURITY = {
    "x-frame-options": "deny",
    "x-xss-protection": "1; mode=block",
    "x-content-type-options": "nosniff",
    "x-robots-header": "noindex",
}
CORS_GET = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, OPTIONS",
    "access-control-allow-headers": "Range",
    "access-control-expose-headers": "Content-Length, Content-Range, Accept-Ranges",
}


def test_get_and_head(edge: EdgeFactory, primary_url: str) -> None:
    with edge(primary=primary_url) as url:
        response = httpx.get(url + WHEEL.path)
        head = httpx.head(url + WHEEL.path)
        sdist = httpx.get(url + SDIST.path + "?cachebuster=1#frag")
    assert response.status_code == 200
    assert response.content == WHEEL.data
    headers = response.headers
    for name, value in {**SECURITY, **CORS_GET}.items():
        assert headers[name] == value
    assert headers["cache-control"] == "max-age=365000000, immutable, public"
    assert headers["accept-ranges"] == "bytes"
    assert headers["content-length"] == str(len(WHEEL.data))
    assert headers["content-type"] == "application/zip"
    assert headers["etag"].startswith('"')
    assert headers["last-modified"].endswith(" GMT")
    assert headers["x-pypi-file-project"] == "demo-pkg"
    assert headers["x-pypi-file-version"] == "1.0"
    assert headers["x-pypi-file-package-type"] == "bdist_wheel"
    assert headers["x-pypi-file-python-version"] == "py3"
    assert "expires" not in headers
    assert "x-permitted-cross-domain-policies" not in headers
    assert "strict-transport-security" not in headers
    assert not [name for name in headers if name.startswith(("x-amz-", "x-goog-", "x-guploader"))]
    assert head.status_code == 200
    assert head.content == b""
    assert {k: v for k, v in head.headers.items() if k != "date"} == {
        k: v for k, v in headers.items() if k != "date"
    }
    assert sdist.status_code == 200
    assert sdist.content == SDIST.data
    assert sdist.headers["content-type"] == "application/x-tar"
    assert sdist.headers["x-pypi-file-package-type"] == "sdist"


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [("bytes=0-99", 0, 100), ("bytes=100-", 100, None), ("bytes=-8192", -8192, None)],
)
def test_ranges(
    edge: EdgeFactory, primary_url: str, range_header: str, start: int, end: int | None
) -> None:
    size = len(WHEEL.data)
    expected = WHEEL.data[start:end]
    first = start if start >= 0 else size + start
    with edge(primary=primary_url) as url:
        response = httpx.get(url + WHEEL.path, headers={"Range": range_header})
    assert response.status_code == 206
    assert response.content == expected
    assert response.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{size}"
    assert response.headers["content-length"] == str(len(expected))


def test_unsatisfiable_and_multi_range(edge: EdgeFactory, primary_url: str) -> None:
    size = len(WHEEL.data)
    with edge(primary=primary_url) as url:
        beyond = httpx.get(url + WHEEL.path, headers={"Range": f"bytes={size}-"})
        multi = httpx.get(url + WHEEL.path, headers={"Range": "bytes=0-1,5-9"})
        garbage = httpx.get(url + WHEEL.path, headers={"Range": "bytes=zz-1"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    assert (multi.status_code, multi.content) == (200, WHEEL.data)
    assert (garbage.status_code, garbage.content) == (200, WHEEL.data)


def test_conditional_requests(edge: EdgeFactory, primary_url: str) -> None:
    with edge(primary=primary_url) as url:
        first = httpx.get(url + WHEEL.path)
        by_etag = httpx.get(url + WHEEL.path, headers={"If-None-Match": first.headers["etag"]})
        by_date = httpx.get(
            url + WHEEL.path, headers={"If-Modified-Since": first.headers["last-modified"]}
        )
        stale = httpx.get(url + WHEEL.path, headers={"If-None-Match": '"other"'})
        bad_date = httpx.get(url + WHEEL.path, headers={"If-Modified-Since": "yesterday-ish"})
    assert (by_etag.status_code, by_etag.content) == (304, b"")
    assert by_etag.headers["etag"] == first.headers["etag"]
    assert by_date.status_code == 304
    assert stale.status_code == 200
    assert bad_date.status_code == 200


def test_metadata_compression(edge: EdgeFactory, primary_url: str) -> None:
    metadata = metadata_of(WHEEL)
    path = WHEEL.path + ".metadata"
    with edge(primary=primary_url) as url:
        plain = httpx.get(url + path, headers={"Accept-Encoding": "identity"})
        gzipped = httpx.get(url + path, headers={"Accept-Encoding": "gzip"})
        brotlied = httpx.get(url + path, headers={"Accept-Encoding": "gzip, br"})
        refused = httpx.get(url + path, headers={"Accept-Encoding": "br;q=0, gzip;q=0"})
    assert (plain.status_code, plain.content) == (200, metadata)
    assert plain.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in plain.headers
    # httpx decodes both encodings, so equal content proves a valid stream.
    assert (gzipped.headers["content-encoding"], gzipped.content) == ("gzip", metadata)
    assert gzipped.headers["vary"] == "Accept-Encoding"
    assert (brotlied.headers["content-encoding"], brotlied.content) == ("br", metadata)
    assert refused.content == metadata
    assert "content-encoding" not in refused.headers


def test_missing_object_is_404(edge: EdgeFactory, primary_url: str) -> None:
    missing = "/packages/00/00/" + "0" * 60 + "/nothing-1.0.tar.gz"
    with edge(primary=primary_url) as url:
        response = httpx.get(url + missing)
    assert (response.status_code, response.text) == (404, "Not Found\n")
    assert response.headers["x-permitted-cross-domain-policies"] == "none"
