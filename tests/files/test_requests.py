"""Request rules of the files edge (methods, CORS, TLS, purge, admin, hostile input),
against file, S3 and GCS primaries."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pythonhosted.storage import open_store
from pythonhosted.web.server import Bind, free_port
from support.edge import SAMPLES, EdgeFactory, edge_process, metadata_of, raw_request, seed
from support.processes import wait_until

WHEEL = SAMPLES["wheel"]


# BREW and FOO-BAR: methods llhttp does not know, parsed again by our server (web.h1)
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE", "BREW", "FOO-BAR"])
def test_other_methods_are_405(edge: EdgeFactory, primary_url: str, method: str) -> None:
    with edge(primary=primary_url) as url:
        response = httpx.request(method, url + WHEEL.path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    assert response.headers["content-type"] == "text/plain; charset=UTF-8"
    assert response.text == "Method not allowed\n"


def test_a_method_http_does_not_know_is_405_and_the_connection_goes_on(
    edge: EdgeFactory, primary_url: str
) -> None:
    """The spec's 405 for any method but the edge's, lower-case ``get`` (methods are
    case-sensitive) and one with a body among them; the requests after each are answered on
    the same connection. Once a request's method is not the first thing in what the server
    reads at once, nothing says where that request began: 501, and the connection closes."""
    with edge(primary=primary_url) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        path = WHEEL.path.encode()
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            for method, body in ((b"BREW", b""), (b"get", b""), (b"BREW", b"coffee")):
                framing = b"content-length: %d\r\n" % len(body) if body else b""
                sock.sendall(method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" + framing)
                sock.sendall(b"\r\n" + body)
                head = _response(sock)
                assert head.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"), head
                assert b"\r\nallow: GET, HEAD, OPTIONS\r\n" in head
            sock.sendall(b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(sock, body=False).startswith(b"HTTP/1.1 200 OK\r\n")
            pipelined = b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            sock.sendall(pipelined + b"BREW " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(sock, body=False).startswith(b"HTTP/1.1 200 OK\r\n")
            late = _response(sock)
            assert late.startswith(b"HTTP/1.1 501 Not Implemented\r\n")
            assert b"\r\nconnection: close\r\n" in late
            assert sock.recv(1) == b""


def _response(sock: socket.socket, body: bool = True) -> bytes:
    """One response's head (its body read past when ``body``), as sent."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        assert chunk, data
        data += chunk
    length = int(re.search(rb"content-length: (\d+)", data).group(1))  # type: ignore[union-attr]
    remaining = length if body else 0
    while remaining:
        remaining -= len(sock.recv(remaining))
    return data


def test_cors_preflight(edge: EdgeFactory, primary_url: str) -> None:
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "GET"}
    with edge(primary=primary_url) as url:
        response = httpx.options(url + WHEEL.path, headers=preflight)
        bare = httpx.options(url + WHEEL.path)
        elsewhere = httpx.options(url + "/simple/", headers=preflight)
    assert (response.status_code, response.content) == (204, b"")
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert response.headers["access-control-allow-headers"] == "Range, Accept-Encoding"
    assert response.headers["access-control-max-age"] == "86400"
    assert response.headers["x-frame-options"] == "deny"
    assert "x-permitted-cross-domain-policies" not in response.headers
    assert bare.status_code == 405
    assert bare.headers["allow"] == "GET, HEAD, OPTIONS"
    assert elsewhere.status_code == 405


def test_tls_policy_and_hsts(edge: EdgeFactory, primary_url: str) -> None:
    https = {"X-Forwarded-Proto": "https"}
    with edge(primary=primary_url, require_tls=True, trust_proxy_headers=True) as url:
        plain = httpx.get(url + WHEEL.path)
        secure = httpx.get(url + WHEEL.path, headers=https)
    with edge(primary=primary_url) as url:
        untrusted = httpx.get(url + WHEEL.path, headers=https)
    assert (plain.status_code, plain.text) == (403, "SSL is required\n")
    assert secure.status_code == 200
    assert (
        secure.headers["strict-transport-security"]
        == "max-age=31536000; includeSubDomains; preload"
    )
    assert "strict-transport-security" not in untrusted.headers


def test_health_and_metrics(edge: EdgeFactory, primary_url: str) -> None:
    with edge(primary=primary_url) as url:
        httpx.get(url + WHEEL.path)
        httpx.get(url + WHEEL.path + ".metadata", headers={"Accept-Encoding": "identity"})
        health = httpx.get(url + "/_health")
        metrics = httpx.get(url + "/metrics").text
    assert (health.status_code, health.text) == (200, "OK\n")
    # Counted so far: the wheel, its .metadata and the health check.
    assert 'files_requests_total{status="200"} 3.0' in metrics.splitlines()
    assert 'files_sidecars_served_total{kind="metadata"} 1.0' in metrics.splitlines()
    sent = len(WHEEL.data) + len(metadata_of(WHEEL)) + len("OK\n")
    assert f"files_bytes_sent_total {float(sent)}" in metrics.splitlines()


def test_metrics_are_totals_over_all_workers(tmp_path: Path) -> None:
    """With --workers 2 each scrape lands on one worker; every scrape still shows the totals."""
    bind = Bind("127.0.0.1", free_port())
    missing = "/packages/00/00/" + "0" * 60 + "/missing-1.0.tar.gz"
    with edge_process(tmp_path, f"file://{tmp_path}/primary", bind, workers=2) as process:
        with ThreadPoolExecutor(16) as pool:  # a connection each, so both workers answer some
            statuses = list(
                pool.map(lambda _: httpx.get(bind.url() + missing).status_code, range(60))
            )
        assert statuses == [404] * 60

        def six_scrapes_in_a_row_say_60() -> bool:
            for _ in range(6):  # the other worker's snapshot is at most 2 s old
                text = httpx.get(bind.url() + "/metrics").text
                found = re.search(r'^files_requests_total\{status="404"\} (\S+)$', text, re.M)
                if not found or float(found.group(1)) != 60.0:
                    return False
            return True

        wait_until(six_scrapes_in_a_row_say_60, interval=0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_purge(edge: EdgeFactory, primary_url: str) -> None:
    # Objects over 1000 bytes are not cached whole, so the tail read below is cached as a range.
    with edge(primary=primary_url, purge_secret="s3cret", cache_object_max_bytes=1000) as url:
        assert httpx.get(url + WHEEL.path).status_code == 200
        tail = {"Range": "bytes=-100"}
        assert httpx.get(url + WHEEL.path, headers=tail).status_code == 206
        asyncio.run(open_store(primary_url).delete(WHEEL.key))  # a takedown at the origin
        anonymous = httpx.request("PURGE", url + WHEEL.path)
        wrong = httpx.request("PURGE", url + WHEEL.path, headers={"Authorization": "Bearer no"})
        # Still cached: a HEAD needs no bytes from the store.
        assert httpx.head(url + WHEEL.path).status_code == 200
        right = httpx.request("PURGE", url + WHEEL.path, headers={"Authorization": "Bearer s3cret"})
        after = httpx.get(url + WHEEL.path)
        tail_after = httpx.get(url + WHEEL.path, headers=tail)
    assert anonymous.status_code == 401
    assert wrong.status_code == 403
    assert (right.status_code, right.text) == (200, "Purged\n")
    assert after.status_code == 404
    assert tail_after.status_code == 404  # cached ranges went with the purge


def test_admin_forces_a_backend(edge: EdgeFactory, tmp_path: Path) -> None:
    archive = f"file://{tmp_path}/archive"
    seed(archive)
    primary = f"file://{tmp_path}/empty"
    admin = {"X-PyPI-Admin": "adm1n"}
    with edge(primary=primary, archive=archive, admin_secret="adm1n") as url:
        normal = httpx.get(url + WHEEL.path)
        forced_primary = httpx.get(
            url + WHEEL.path, headers={**admin, "X-Force-Backend": "PRIMARY"}
        )
        forced_archive = httpx.get(
            url + WHEEL.path, headers={**admin, "X-Force-Backend": "ARCHIVE"}
        )
        wrong_secret = httpx.get(
            url + WHEEL.path, headers={"X-PyPI-Admin": "guess", "X-Force-Backend": "PRIMARY"}
        )
    assert normal.status_code == 200  # from the archive
    assert forced_primary.status_code == 404  # the cache was bypassed
    assert forced_archive.status_code == 200
    assert wrong_secret.status_code == 200  # a wrong secret changes nothing


def test_legacy_paths_are_404_without_conveyor(edge: EdgeFactory, primary_url: str) -> None:
    with edge(primary=primary_url) as url:
        legacy = httpx.get(url + "/packages/source/d/demo-pkg/demo-pkg-1.0.tar.gz")
        other = httpx.get(url + "/robots.txt")
    assert legacy.status_code == 404
    assert other.status_code == 404


HOSTILE = [
    ("/packages/../../etc/passwd", 400),
    ("/packages/%2e%2e/%2e%2e/etc/passwd", 400),
    ("/packages/aa/bb/" + "c" * 60 + "/x%00.whl", 400),
    ("/packages/aa/bb/" + "c" * 60 + "/..%5c..%5cx.whl", 400),
    ("/packages/aa/bb/" + "c" * 60 + "/a\\b.whl", 400),
    ("/packages//etc/passwd", 400),
    ("/packages/%ff%fe/x", 400),
    ("/packages/" + "a" * 5000, 414),
    ("/.meta/packages/x.json", 404),
]


@pytest.mark.parametrize(("path", "status"), HOSTILE)
def test_hostile_paths(edge: EdgeFactory, primary_url: str, path: str, status: int) -> None:
    with edge(primary=primary_url) as url:
        code, data = raw_request(url, f"GET {path} HTTP/1.1")
    assert code == status
    assert b"Traceback" not in data
    assert b"root:" not in data


def test_names_no_store_can_hold_are_bad_requests(edge: EdgeFactory, tmp_path: Path) -> None:
    """A file name longer than a file system's (255 bytes) or one with a control character
    names nothing: 400, not a 503 that counts the primary as unavailable and sends every such
    request on to the archive."""
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    prefix = WHEEL.path.rsplit("/", 1)[0]
    paths = [
        f"{prefix}/{'a' * 300}.whl",
        f"{prefix}/{'a' * 300}.whl.metadata",
        f"{prefix}/{'%C3%A9' * 128}.whl",
        f"{prefix}/a%0ab.whl",
        f"{prefix}/a%7f.whl",
    ]
    with edge(primary=primary, archive=f"file://{tmp_path}/archive") as url:
        answers = [raw_request(url, f"GET {path} HTTP/1.1") for path in paths]
        metrics = httpx.get(url + "/metrics").text
        health = httpx.get(url + "/_health")
    assert [code for code, _ in answers] == [400] * len(paths)
    assert all(data.endswith(b"\r\n\r\nBad request path\n") for _, data in answers)
    assert "files_archive_fallbacks_total{" not in metrics
    assert health.status_code == 200


def test_garbage_headers_do_not_break_anything(edge: EdgeFactory, primary_url: str) -> None:
    garbage = (
        "Range: bytes=99999999999999999999999-\r\n"
        "If-Modified-Since: yesterday\r\n"
        "Accept-Encoding: ;;;q=abc\r\n"
        "If-None-Match: ,,,\r\n"
    )
    with edge(primary=primary_url) as url:
        code, _ = raw_request(url, f"GET {WHEEL.path} HTTP/1.1", garbage)
        control, _ = raw_request(url, f"GET {WHEEL.path} HTTP/1.1", "X-Bad: \x01\x02\r\n")
        health = httpx.get(url + "/_health")
    assert code == 416
    assert control == 400  # refused by the HTTP parser itself
    assert health.status_code == 200


# Dates email.utils cannot hold in a datetime: it raises OverflowError for them, not
# ValueError, and each such request was a 500 with a traceback in the log.
DATES_BEYOND_C = [
    "Mon, 01 Jan 99999999999 00:00:00 GMT",  # the year
    "Mon, 01 Jan 2000 00:00:99999999999999999999 GMT",  # the seconds
    "Mon, 01 Jan 2000 00:00:00 +9999999999999",  # the zone's offset
]


def test_dates_no_calendar_holds_are_not_dates(edge: EdgeFactory, tmp_path: Path) -> None:
    """A validator that is no date is ignored (RFC 9110 §13.1.3, §13.1.5): the whole object."""
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    with edge(primary=primary) as url:
        for date in DATES_BEYOND_C:
            since = httpx.get(url + WHEEL.path, headers={"If-Modified-Since": date})
            ranged = httpx.get(url + WHEEL.path, headers={"Range": "bytes=0-9", "If-Range": date})
            assert (since.status_code, since.content) == (200, WHEEL.data)
            assert (ranged.status_code, ranged.content) == (200, WHEEL.data)
        metrics = httpx.get(url + "/metrics").text.splitlines()
    assert [line for line in metrics if line.startswith("files_requests_total{")] == [
        'files_requests_total{status="200"} 6.0'
    ]


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("s3cret", 401),  # the bare secret, no scheme
        ("Basic s3cret", 401),
        ("Token s3cret", 401),
        ("Bearer", 401),
        ("Bearer  ", 401),
        ("Bearer s3cret extra", 403),
        ("bearer s3cret", 200),  # the scheme is case-insensitive (RFC 9110 §11.1)
    ],
)
def test_purge_takes_only_a_bearer_token(
    edge: EdgeFactory, tmp_path: Path, authorization: str, status: int
) -> None:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    with edge(primary=primary, purge_secret="s3cret") as url:
        answer, data = raw_request(
            url, f"PURGE {WHEEL.path} HTTP/1.1", f"Authorization: {authorization}\r\n"
        )
    head, _, body = data.partition(b"\r\n\r\n")
    assert answer == status
    if status == 401:
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        assert {name.lower(): value for name, value in fields.items()}[
            b"www-authenticate"
        ] == b'Bearer realm="purge"'
        assert body == b"Purge needs Authorization: Bearer\n"


def test_if_range_honours_the_range_only_for_the_same_version(
    edge: EdgeFactory, tmp_path: Path
) -> None:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    with edge(primary=primary) as url:
        head = httpx.head(url + WHEEL.path).headers
        etag, modified = head["etag"], head["last-modified"]
        cases = {
            etag: 206,
            f"W/{etag}": 200,  # weak tags never match If-Range
            '"another-version"': 200,
            modified: 206,
            "Thu, 01 Jan 1970 00:00:00 GMT": 200,
            "not a validator": 200,
        }
        for if_range, status in cases.items():
            response = httpx.get(
                url + WHEEL.path, headers={"Range": "bytes=0-9", "If-Range": if_range}
            )
            assert (if_range, response.status_code) == (if_range, status)
            expected = WHEEL.data[:10] if status == 206 else WHEEL.data
            assert response.content == expected
            if status == 200:
                assert "content-range" not in response.headers
