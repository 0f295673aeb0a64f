"""What comes back: types, sizes, deadlines, statuses and headers (spec rules 8-13, 15)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from pythonhosted.camo.headers import CSP, relayed_response_headers

if TYPE_CHECKING:
    from conftest import Camo, CamoFactory, Upstream


@pytest.fixture(scope="module")
def small(make_camo: CamoFactory) -> Iterator[Camo]:
    """Camo with a 16 KB limit and a deadline well short of /slow's 10 s hold, and long enough
    for an upstream's answer on a starved machine (300 ms is a deadline a loaded machine can
    miss before the headers come: a 504 where the test expects a refusal)."""
    with make_camo(max_size_kb=16, timeout="5s") as camo:
        yield camo


def metric(camo: Camo, name: str) -> float:
    for line in camo.client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_image_streamed_with_camo_headers(camo: Camo, upstream: Upstream) -> None:
    response = camo.get(upstream.base + "/png")
    assert response.status_code == 200
    assert response.content == upstream.png
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(upstream.png))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-xss-protection"] == "1; mode=block"
    assert response.headers["content-security-policy"] == CSP.decode()
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["server"] == "pythonhosted-camo"


def test_non_image_refused_without_body(camo: Camo, upstream: Upstream) -> None:
    response = camo.get(upstream.base + "/html")
    assert response.status_code == 403
    assert response.headers["x-camo-error"] == "content type text/html not allowed"
    assert b"secret page" not in response.content
    assert response.headers["content-type"] == "text/plain; charset=UTF-8"


def test_svg_served_with_script_blocking_csp(camo: Camo, upstream: Upstream) -> None:
    response = camo.get(upstream.base + "/svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert "script-src" not in response.headers["content-security-policy"]
    assert response.content == upstream.svg


@pytest.mark.parametrize("path", ["/octet-png", "/untyped-png"])
def test_generic_type_accepted_for_raster_magic(camo: Camo, upstream: Upstream, path: str) -> None:
    response = camo.get(upstream.base + path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == upstream.png


def test_svg_is_never_sniffed(camo: Camo, upstream: Upstream) -> None:
    response = camo.get(upstream.base + "/octet-svg")
    assert response.status_code == 403
    assert response.headers["x-camo-error"] == "content type application/octet-stream not allowed"


def test_video_only_when_enabled(make_camo: CamoFactory, camo: Camo, upstream: Upstream) -> None:
    assert camo.get(upstream.base + "/video").status_code == 403
    with make_camo(allow_video=True) as video:
        assert video.get(upstream.base + "/video").status_code == 200


def test_content_length_over_limit_refused_before_reading(small: Camo, upstream: Upstream) -> None:
    before = metric(small, "camo_content_length_exceeded_total")
    # /png is 20 KB; /huge-declared never finishes its body, so a proxy that read it would
    # run into the deadline (504) instead of answering 404 from the headers.
    for path in ("/png", "/huge-declared"):
        response = small.get(upstream.base + path)
        assert response.status_code == 404
        assert response.headers["x-camo-error"].startswith("content length ")
    assert metric(small, "camo_content_length_exceeded_total") == before + 2


def test_chunked_body_over_limit_is_cut_off(make_camo: CamoFactory, upstream: Upstream) -> None:
    # camo relays at most 64 KiB per read, so with a 100 KB limit the first part has gone out
    # before the limit is passed: the connection must then be dropped, not ended cleanly.
    with make_camo(max_size_kb=100) as camo:
        whole = camo.get(upstream.base + "/chunked?chunks=4&size=20000")
        assert whole.content == bytes(80000)
        try:
            refused = camo.get(upstream.base + "/chunked?chunks=4&size=40000")
        except httpx.RemoteProtocolError:
            pass  # cut off: the first part had gone out before the limit was passed
        else:
            # On a loaded machine the whole body can arrive before the first relay: then it is
            # refused before anything was sent. Never a clean 200.
            assert (refused.status_code, refused.headers["x-camo-error"]) == (
                404,
                "body passed the 102400 byte limit",
            )
        assert metric(camo, "camo_responses_truncated_total") == 1


def test_slow_upstream_is_504(small: Camo, upstream: Upstream) -> None:
    response = small.get(upstream.base + "/slow")
    assert response.status_code == 504
    assert response.headers["x-camo-error"] == "upstream took too long"
    assert metric(small, 'camo_responses_failed_total{reason="timeout"}') >= 1


def test_not_modified_passes_through(camo: Camo, upstream: Upstream) -> None:
    first = camo.get(upstream.base + "/etag")
    assert first.headers["etag"] == '"v1"'
    second = camo.get(upstream.base + "/etag", headers={"If-None-Match": '"v1"'})
    assert second.status_code == 304
    assert second.headers["etag"] == '"v1"'
    assert second.headers["cache-control"] == "max-age=60"
    assert second.content == b""


def test_head(camo: Camo, upstream: Upstream) -> None:
    response = camo.client.head(camo.url(upstream.base + "/png"))
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(upstream.png))
    assert response.content == b""
    assert [hit.method for hit in upstream.hits] == ["HEAD"]


def test_request_headers_filtered(camo: Camo, upstream: Upstream) -> None:
    response = camo.get(
        upstream.base + "/echo",
        headers={
            "Cookie": "pypi_session=secret",
            "Authorization": "Bearer secret",
            "X-Forwarded-For": "203.0.113.9",
            "Referer": "https://pypi.org/project/secret/",
            "Accept-Language": "de",
            "If-Modified-Since": "Wed, 21 Oct 2015 07:28:00 GMT",
            "Range": "bytes=0-",
            "Accept": "image/webp,*/*",
        },
    )
    seen = json.loads(response.content)
    for name in ("cookie", "authorization", "x-forwarded-for", "referer"):
        assert name not in seen
    assert seen["accept-language"] == "de"
    assert seen["if-modified-since"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert seen["range"] == "bytes=0-"
    assert seen["user-agent"] == "pythonhosted-camo"
    assert seen["via"] == "pythonhosted-camo"  # as go-camo sends it: the server name
    assert seen["accept"] == "image/*, image/svg+xml"  # go-camo's own, not the client's
    assert "accept-encoding" not in seen


def test_response_headers_filtered(camo: Camo, upstream: Upstream) -> None:
    headers = camo.get(upstream.base + "/noisy-headers").headers
    assert "set-cookie" not in headers
    assert "x-upstream-private" not in headers
    assert headers["access-control-allow-origin"] == "*"
    assert headers["content-security-policy"] == CSP.decode()
    assert headers["etag"] == '"abc"'
    assert headers["cache-control"] == "public, max-age=300"
    assert headers["last-modified"] == "Wed, 21 Oct 2015 07:28:00 GMT"


def test_relayed_headers_from_raw_bytes() -> None:
    """Relaying works on upstream's raw header bytes: any case, first of duplicates only,
    nothing outside the allowed names."""
    raw = (
        (b"ETag", b'"a"'),
        (b"SET-COOKIE", b"s=1"),
        (b"cache-control", b"max-age=1"),
        (b"Cache-Control", b"no-store"),
        (b"X-Other", b"1"),
    )
    allowed = frozenset({b"etag", b"cache-control"})
    assert relayed_response_headers(raw, allowed) == [
        (b"etag", b'"a"'),
        (b"cache-control", b"max-age=1"),
    ]


@pytest.mark.parametrize(
    ("upstream_status", "status"), [(404, 404), (500, 502), (503, 502), (403, 404), (410, 404)]
)
def test_upstream_errors(camo: Camo, upstream: Upstream, upstream_status: int, status: int) -> None:
    response = camo.get(f"{upstream.base}/status/{upstream_status}")
    assert response.status_code == status
    assert response.headers["x-camo-error"] == f"upstream answered {upstream_status}"
    assert b"upstream error page" not in response.content


def test_connection_refused_is_502(make_camo: CamoFactory) -> None:
    with make_camo(allow_networks=["127.0.0.3/32"]) as camo:
        response = camo.get("http://127.0.0.3:9/x.png")
    assert response.status_code == 502
    assert response.headers["x-camo-error"] == "cannot connect to 127.0.0.3"


def test_extra_headers_and_server_name(make_camo: CamoFactory, upstream: Upstream) -> None:
    hsts = "max-age=31536000; includeSubDomains"
    with make_camo(headers={"Strict-Transport-Security": hsts}, server_name="camo-test") as camo:
        ok = camo.get(upstream.base + "/png")
        refused = camo.client.get("/0/0")
    for response in (ok, refused):
        assert response.headers["strict-transport-security"] == hsts
        assert response.headers["server"] == "camo-test"
    assert upstream.hits[0].headers["via"] == "camo-test"


def test_health_and_metrics(camo: Camo, upstream: Upstream) -> None:
    for path in ("/healthcheck", "/_health"):
        response = camo.client.get(path)
        assert (response.status_code, response.text) == (200, "OK\n")
    camo.get(upstream.base + "/png")
    camo.client.get("/0/0")
    text = camo.client.get("/metrics").text
    assert 'camo_responses_failed_total{reason="signature"}' in text
    assert 'camo_responses_total{code="200"}' in text
    assert "camo_response_duration_seconds_bucket" in text
    assert "camo_response_size_bytes_bucket" in text
