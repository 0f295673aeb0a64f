"""go-camo's proxy behaviour (its proxy, filter and timeout tests), as behaviour of ours.

go-camo's own tests fetch from httpbin.org, w3schools and google; here a stand-in for those
sites runs on 127.0.0.2 (redirects of every kind, arbitrary response headers, ranged video and
audio), and names resolve through the test stub resolver. Where camo answers differently on
purpose (a type refusal is 403 with a reason, not go-camo's 400; a bad signature is 404, not
403; a body that breaks off or grows past the limit drops the connection instead of ending
a 200 short), the test asserts camo's answer and says so.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import httpx
import pytest

from pythonhosted import __version__
from pythonhosted.camo.headers import CSP
from pythonhosted.camo.rules import Rules
from pythonhosted.web.server import running
from pythonhosted.web.types import Receive, Scope, Send

if TYPE_CHECKING:
    from conftest import Camo, CamoFactory, RawUpstream

VIDEO = bytes(range(256)) * 3081  # 788,736 bytes, about the size of go-camo's test video
AUDIO = b"OggS" + bytes(49_868)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(1000)


class Site:
    """The stand-in for the sites go-camo's tests use; remembers each request's headers
    and the client port it came from (one port per upstream connection)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], int]] = []
        self.base = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers = {k.decode(): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests.append((path, headers, scope["client"][1]))
        query = parse_qs(scope["query_string"].decode())
        if path == "/redirect-to":
            status = int(query.get("status_code", ["302"])[0])
            await self._send(send, status, [(b"location", query["url"][0].encode())])
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            location = b"/image.png" if left <= 1 else b"/redirect/%d" % (left - 1)
            await self._send(send, 302, [(b"location", location)])
        elif path == "/response-headers":
            sent = [(name.encode(), values[0].encode()) for name, values in query.items()]
            await self._send(send, 200, sent, PNG)
        elif path in ("/image.png", "/Screen Shot 2012-01-17 at 3.42.32 PM.png"):
            await self._send(send, 200, [(b"content-type", b"image/png")], PNG)
        elif path == "/xff.png":
            seen = headers.get("x-forwarded-for", "").encode()
            await self._send(send, 200, [(b"content-type", b"image/png")], seen)
        elif path == "/mov_bbb.mp4":
            await self._ranged(send, headers, b"video/mp4", VIDEO)
        elif path == "/alarm_clock.ogg":
            await self._ranged(send, headers, b"audio/ogg", AUDIO)
        elif path == "/bootstrap.sh":
            await self._send(send, 200, [(b"content-type", b"text/plain")], b"#!/bin/sh\n")
        elif path == "/large.jpg":
            big = 5 * 1024 * 1024 + 1
            await self._send(send, 200, [(b"content-type", b"image/jpeg")], bytes(big))
        else:
            await self._send(send, 404, [], b"404 page not found")

    async def _ranged(self, send: Send, headers: dict[str, str], kind: bytes, body: bytes) -> None:
        wanted = headers.get("range", "")
        if wanted.startswith("bytes="):
            first, last = (int(n) for n in wanted.removeprefix("bytes=").split("-"))
            extra = [(b"content-range", b"bytes %d-%d/%d" % (first, last, len(body)))]
            await self._send(send, 206, [(b"content-type", kind), *extra], body[first : last + 1])
        else:
            await self._send(send, 200, [(b"content-type", kind)], body)

    @staticmethod
    async def _send(
        send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> None:
        headers = [*headers, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    state = Site()
    with running(state, host="127.0.0.2") as base:
        state.base = base
        yield state


@pytest.fixture
def web(site: Site) -> Site:
    site.requests.clear()
    return site


def go_config(make_camo: CamoFactory, **settings: Any) -> Any:
    """go-camo's test configuration: 5 MB limit, 3 redirects, a custom response header."""
    values: dict[str, Any] = {"max_size_kb": 5120, "max_redirects": 3, "timeout": "10s"}
    values["headers"] = {"X-Go-Camo": "test"}
    return make_camo(**{**values, **settings})


@pytest.fixture(scope="module")
def gocamo(make_camo: CamoFactory) -> Iterator[Camo]:
    with go_config(make_camo) as camo:
        yield camo


def assert_refused(response: httpx.Response, status: int, reason: str) -> None:
    assert (response.status_code, response.headers.get("x-camo-error")) == (status, reason)
    assert response.headers["content-security-policy"] == CSP.decode()
    assert response.headers["x-go-camo"] == "test"


# -- proxy_test.go --


def test_not_found_path_carries_camo_headers(gocamo: Camo) -> None:
    response = gocamo.client.get("/favicon.ico")
    assert_refused(response, 404, "bad signature or encoding")  # go-camo: 404 as well
    assert response.headers["server"] == "pythonhosted-camo"


def test_simple_valid_image(gocamo: Camo, web: Site) -> None:
    response = gocamo.get(web.base + "/image.png")
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["x-go-camo"] == "test"
    assert response.headers["server"] == "pythonhosted-camo"


def test_chunked_image(gocamo: Camo, raw_upstream: RawUpstream) -> None:
    pieces = [PNG[i : i + 100] for i in range(0, len(PNG), 100)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    raw_upstream.replies["/chunked.png"] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    response = gocamo.get(raw_upstream.base + "/chunked.png")
    assert (response.status_code, response.content) == (200, PNG)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_follows_redirects(gocamo: Camo, web: Site, status: int) -> None:
    target = quote(web.base + "/image.png", safe="")
    response = gocamo.get(f"{web.base}/redirect-to?status_code={status}&url={target}")
    assert (response.status_code, response.content) == (200, PNG)


def test_redirect_with_path_only(gocamo: Camo, web: Site) -> None:
    inner = "/redirect-to?url=" + quote("/image.png", safe="")
    response = gocamo.get(f"{web.base}/redirect-to?status_code=302&url={quote(inner, safe='')}")
    assert (response.status_code, response.content) == (200, PNG)
    assert [path for path, _, _ in web.requests] == ["/redirect-to", "/redirect-to", "/image.png"]


def test_strange_format_redirect(gocamo: Camo, web: Site) -> None:
    target = quote("/Screen%20Shot%202012-01-17%20at%203.42.32%20PM.png", safe="")
    response = gocamo.get(f"{web.base}/redirect-to?url={target}")
    assert (response.status_code, response.content) == (200, PNG)


def test_bad_content_type(gocamo: Camo, web: Site) -> None:
    response = gocamo.get(web.base + "/response-headers?Content-Type=what")
    assert_refused(response, 403, "malformed Content-Type: 'what'")  # go-camo: 400


def test_content_type_parameters_kept(gocamo: Camo, web: Site) -> None:
    url = web.base + "/response-headers?Content-Type=" + quote("image/svg+xml;charset=UTF-8")
    response = gocamo.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml; charset=UTF-8"


@pytest.mark.parametrize(
    "value",
    [
        b"image/png, text/html; charset=UTF-8",
        b"image/png,text/html; charset=UTF-8",
        b"image/png text/html",
        b"image/png%;text/html",
        b"image/png; charset=UTF-8;text/html",
    ],
)
def test_content_type_smuggling(gocamo: Camo, raw_upstream: RawUpstream, value: bytes) -> None:
    raw_upstream.replies["/smuggle"] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + value + b"\r\nContent-Length: 4\r\n\r\n<b/>"
    )
    response = gocamo.get(raw_upstream.base + "/smuggle")
    assert response.status_code == 403  # go-camo: 400
    assert response.content != b"<b/>"


def test_x_forwarded_for(make_camo: CamoFactory, web: Site) -> None:
    chain = {"X-Forwarded-For": "2.2.2.2, 1.1.1.1"}
    with go_config(make_camo, enable_xfwd4=True) as camo:
        assert camo.get(web.base + "/xff.png", headers=chain).content == b"2.2.2.2, 1.1.1.1"
        # no header from the client, and its address is loopback: nothing is invented
        assert camo.get(web.base + "/xff.png").content == b""
    with go_config(make_camo) as camo:
        assert camo.get(web.base + "/xff.png", headers=chain).content == b""


def test_video_when_allowed(make_camo: CamoFactory, web: Site) -> None:
    url = web.base + "/mov_bbb.mp4"
    with go_config(make_camo, max_size_kb=180, allow_video=True) as camo:
        response = camo.get(url, headers={"Range": "bytes=0-10"})
        assert response.status_code == 206
        assert response.headers["content-range"] == f"bytes 0-10/{len(VIDEO)}"
        assert response.content == VIDEO[:11]
        assert camo.get(url).status_code == 404  # the whole video is over 180 KB
    with go_config(make_camo, max_size_kb=1, allow_video=True) as camo:
        response = camo.get(url, headers={"Range": "bytes=0-1025"})
        assert_refused(response, 404, "content length 1026 over the 1024 byte limit")
    with go_config(make_camo, max_size_kb=5000, allow_video=True) as camo:
        assert camo.get(url).content == VIDEO


def test_audio_when_allowed(make_camo: CamoFactory, web: Site) -> None:
    url = web.base + "/alarm_clock.ogg"
    with go_config(make_camo, max_size_kb=180, allow_audio=True) as camo:
        assert camo.get(url).content == AUDIO
        response = camo.get(url, headers={"Range": "bytes=0-10"})
        assert response.status_code == 206
        assert response.headers["content-range"] == f"bytes 0-10/{len(AUDIO)}"


def test_credential_urls_when_allowed(make_camo: CamoFactory, web: Site) -> None:
    url = web.base.replace("http://", "http://user:pass@") + "/image.png"
    with go_config(make_camo, allow_credential_urls=True) as camo:
        assert camo.get(url).status_code == 200
    assert web.requests[0][1]["authorization"] == "Basic dXNlcjpwYXNz"


def test_max_size_redirect(make_camo: CamoFactory, web: Site) -> None:
    url = web.base + "/mov_bbb.mp4"
    elsewhere = "http://example.com/some-image.png"
    settings = {"max_size_kb": 1, "allow_video": True}
    with go_config(make_camo, max_size_redirect=elsewhere, **settings) as camo:
        response = camo.get(url, headers={"Range": "bytes=0-1025"})
        assert (response.status_code, response.headers["location"]) == (302, elsewhere)
        assert response.headers["x-camo-error"] == "content length 1026 over the 1024 byte limit"
        assert response.headers["content-security-policy"] == CSP.decode()
    with go_config(make_camo, max_size_redirect="original", **settings) as camo:
        response = camo.get(url)
        assert (response.status_code, response.headers["location"]) == (302, url)
        assert "camo_content_length_exceeded_total 1.0" in camo.client.get("/metrics").text


def test_accept_supplied_whatever_the_client_sent(make_camo: CamoFactory, web: Site) -> None:
    with go_config(make_camo) as camo:
        camo.get(web.base + "/image.png", headers={"Accept": "text/html"})
    with go_config(make_camo, allow_video=True, allow_audio=True) as camo:
        camo.get(web.base + "/image.png")
    accepts = [headers["accept"] for _, headers, _ in web.requests]
    assert accepts == ["image/*, image/svg+xml", "image/*, image/svg+xml, video/*, audio/*"]


def test_video_refused_unless_allowed(gocamo: Camo, web: Site) -> None:
    response = gocamo.get(web.base + "/mov_bbb.mp4")
    assert_refused(response, 403, "content type video/mp4 not allowed")  # go-camo: 400


def test_credential_url_refused(gocamo: Camo, web: Site) -> None:
    url = web.base.replace("http://", "http://user:pass@") + "/image.png"
    assert_refused(gocamo.get(url), 404, "URLs with credentials are not allowed")
    assert web.requests == []


def test_redirect_limit(gocamo: Camo, web: Site) -> None:
    assert_refused(gocamo.get(web.base + "/redirect/4"), 404, "more than 3 redirects")
    # go-camo stops at its third redirect (Go counts requests); camo follows the 3 it allows
    assert gocamo.get(web.base + "/redirect/3").status_code == 200


def test_url_without_host(gocamo: Camo) -> None:
    assert_refused(gocamo.get("/picture/Mincemeat/Pimp.jpg"), 404, "not an absolute http(s) URL")


def test_image_larger_than_5mb(gocamo: Camo, web: Site) -> None:
    response = gocamo.get(web.base + "/large.jpg")
    assert_refused(response, 404, "content length 5242881 over the 5242880 byte limit")


def test_host_not_found(gocamo: Camo) -> None:
    assert_refused(gocamo.get("http://flabergasted.cx"), 404, "cannot resolve flabergasted.cx")


def test_non_image_content(gocamo: Camo, web: Site) -> None:
    response = gocamo.get(web.base + "/bootstrap.sh")
    assert_refused(response, 403, "content type text/plain not allowed")
    assert b"#!/bin/sh" not in response.content


@pytest.mark.parametrize(
    "host",
    ["10.0.0.1", "169.254.0.1", "192.168.0.1", *(f"172.{n}.0.1" for n in range(16, 32))],
)
def test_private_ranges(gocamo: Camo, host: str) -> None:
    response = gocamo.get(f"http://{host}/foo.cgi")
    assert response.status_code == 404
    assert response.headers["x-camo-error"].startswith(f"address {host} is in refused range")


@pytest.mark.parametrize("url", ["http://localhost/foo.cgi", "http://localhost:80/foo.cgi",
                                 "http://a.b.localhost/x", "http://LocalDomain./x"])  # fmt: skip
def test_localhost_names(gocamo: Camo, url: str) -> None:
    host = url.split("/")[2].split(":")[0].lower()
    assert_refused(gocamo.get(url), 404, f"host {host!r} is local")


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://localhost/some.png", "host 'localhost' is local"),
        ("http://127.0.0.100/some.png", "address 127.0.0.100 is in refused range 127.0.0.0/8"),
        ("http://user:pass@127.0.0.100/some.png", "URLs with credentials are not allowed"),
        (
            "http://self.test/some.png",
            "self.test: address 127.0.0.1 is in refused range 127.0.0.0/8",
        ),
    ],
)
def test_redirects_to_local_targets(gocamo: Camo, web: Site, target: str, reason: str) -> None:
    response = gocamo.get(f"{web.base}/redirect-to?url={quote(target, safe='')}")
    assert_refused(response, 404, reason)


# -- proxy_timeout_test.go --


def test_timeout(make_camo: CamoFactory, raw_upstream: RawUpstream) -> None:
    hung = socket.create_server(("127.0.0.2", 0))  # accepts, never answers
    try:
        with go_config(make_camo, timeout="500ms") as camo:
            response = camo.get(f"http://127.0.0.2:{hung.getsockname()[1]}/x.png")
        assert_refused(response, 504, "upstream took too long")
    finally:
        hung.close()


def drip(raw_upstream: RawUpstream, path: str) -> str:
    """An answer that starts and breaks off: headers and two chunks, then the connection ends."""
    raw_upstream.replies[path] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"a\r\nChunk #%03d\r\n" % n for n in range(1, 3))
    )
    return raw_upstream.base + path


def test_client_gone_early_or_late_leaves_camo_serving(
    gocamo: Camo, raw_upstream: RawUpstream, web: Site
) -> None:
    target = gocamo.url(drip(raw_upstream, "/drip")).removeprefix(gocamo.base)
    host, port = gocamo.base.removeprefix("http://").split(":")
    for read_first in (False, True):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target.encode()
            )
            if read_first:
                sock.recv(100)
    assert gocamo.get(web.base + "/image.png").status_code == 200


def test_upstream_early_eof(make_camo: CamoFactory, raw_upstream: RawUpstream) -> None:
    raw_upstream.replies["/early-eof"] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n"
    )
    url = raw_upstream.base + "/early-eof"
    with go_config(make_camo) as camo:  # its 10 s: an early EOF, not a deadline, is tested
        response = camo.get(url)
    # go-camo: a 200 with an empty body; camo refuses rather than relay a short image
    assert_refused(response, 502, "upstream body broke off: connection closed mid-body")


def test_chunks_past_the_limit(make_camo: CamoFactory, raw_upstream: RawUpstream) -> None:
    body = b"".join(b"Chunk #%d\n" % n for n in range(1, 501))
    raw_upstream.replies["/chunky"] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in body.splitlines(keepends=True))
        + b"0\r\n\r\n"
    )
    with go_config(make_camo, max_size_kb=1) as camo:
        response = camo.get(raw_upstream.base + "/chunky")
    # go-camo ends a 200 after 1024 bytes; camo, with nothing relayed yet, refuses (past that
    # point it drops the connection: test_content), so nobody takes a cut image for a whole
    assert_refused(response, 404, "body passed the 1024 byte limit")


# -- request loops, headers upstream, server name --


@pytest.mark.parametrize(
    ("via", "looped"),
    [
        ("pythonhosted-camo", True),
        ("1.1 pythonhosted-camo", True),
        ("1.0 fred, 1.1 pythonhosted-camo (pythonhosted)", True),
        ("1.1 other-camo", False),
        ("pythonhosted-camo-2", False),
    ],
)
def test_request_loop(gocamo: Camo, web: Site, via: str, looped: bool) -> None:
    response = gocamo.get(web.base + "/image.png", headers={"Via": via})
    if looped:
        assert_refused(response, 404, "request loop: Via already names pythonhosted-camo")
        assert web.requests == []
    else:
        assert response.status_code == 200


def test_headers_sent_upstream(make_camo: CamoFactory, web: Site) -> None:
    with go_config(make_camo, server_name="camo-a", user_agent="camo-agent/1") as camo:
        camo.get(web.base + "/image.png", headers={"Accept-Language": "de"})
    headers = web.requests[0][1]
    assert headers["via"] == "camo-a"
    assert headers["user-agent"] == "camo-agent/1"
    assert headers["accept"] == "image/*, image/svg+xml"
    assert headers["accept-language"] == "de"


def test_a_second_camo_behind_the_first_is_a_loop(make_camo: CamoFactory, web: Site) -> None:
    """camo A fetches through camo B with the same name: B sees A's Via and refuses."""
    with make_camo() as inner, make_camo(allow_networks=["127.0.0.0/8"]) as outer:
        response = outer.get(inner.url(web.base + "/image.png"))
    assert response.status_code == 404
    assert response.headers["x-camo-error"] == "upstream answered 404"
    assert web.requests == []


def test_expose_server_version(make_camo: CamoFactory, web: Site) -> None:
    with go_config(make_camo, expose_server_version=True) as camo:
        assert camo.get(web.base + "/image.png").headers["server"] == (
            f"pythonhosted-camo {__version__}"
        )


def test_no_frontend_keep_alive(make_camo: CamoFactory, web: Site) -> None:
    with go_config(make_camo, disable_keepalives_frontend=True) as camo:
        host, port = camo.base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while chunk := sock.recv(65536):  # the server closes: recv returns b""
                received += chunk
    assert received.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in received.lower()


def test_no_backend_keep_alive(make_camo: CamoFactory, web: Site) -> None:
    with go_config(make_camo) as camo:
        for _ in range(3):
            camo.get(web.base + "/image.png")
    with go_config(make_camo, disable_keepalives_backend=True) as camo:
        for _ in range(3):
            camo.get(web.base + "/image.png")
    ports = [port for _, _, port in web.requests]
    assert len(set(ports[:3])) == 1  # one kept-alive connection
    assert len(set(ports[3:])) == 3  # a connection each


def test_metrics_can_be_turned_off(make_camo: CamoFactory) -> None:
    with go_config(make_camo, metrics=False) as camo:
        assert camo.client.get("/metrics").status_code == 404


def test_max_size_zero_is_no_limit(make_camo: CamoFactory, web: Site) -> None:
    with go_config(make_camo, max_size_kb=0) as camo:
        response = camo.get(web.base + "/large.jpg")
    assert (response.status_code, len(response.content)) == (200, 5 * 1024 * 1024 + 1)


# -- filter rules (go-camo-filtering(5), proxy_filter_test.go) --


def ruleset(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.txt"
    path.write_text(text)
    return path


FilterCase = tuple[str, str | None]


@pytest.mark.parametrize(
    ("rules", "cases"),
    [
        (  # allow rules only: anything matching none is refused
            "allow|s|images.test||\n",
            [("http://images.test/image.png", None), ("http://a.images.test/image.png", None),
             ("http://127.0.0.2/image.png", "127.0.0.2/image.png matches no allow rule")],
        ),
        (  # deny rules only
            "deny||*.images.test|i|*/SECRET*\n",
            [("http://a.images.test/x/secret.png", "a.images.test/x/secret.png matches deny rule "
              "deny||*.images.test|i|*/SECRET*"),
             ("http://images.test/x/secret.png", None),  # *. is subdomains only
             ("http://a.images.test/x/public.png", None)],
        ),
        (  # allow first, then deny
            "allow|s|images.test||\ndeny|s|images.test||/private/*\n",
            [("http://images.test/image.png", None),
             ("http://b.images.test/private/x.png", "b.images.test/private/x.png matches deny rule "
              "deny|s|images.test||/private/*"),
             ("http://127.0.0.2/image.png", "127.0.0.2/image.png matches no allow rule")],
        ),
        (  # unicode domains match their punycode form, either way round
            "deny||bücher.test||\n",
            [("http://xn--bcher-kva.test/x.png", "xn--bcher-kva.test/x.png matches deny rule "
              "deny||b\\xfccher.test||"),
             ("http://BÜCHER.test./x.png", "xn--bcher-kva.test/x.png matches deny rule "
              "deny||b\\xfccher.test||")],
        ),
        (  # a case-sensitive path rule, any host; junk lines and comments are skipped
            "# comment\nthis is not a rule\ndeny||*||*/bad.png\n",
            [("http://images.test/a/bad.png", "images.test/a/bad.png matches deny rule "
              "deny||*||*/bad.png"),
             ("http://images.test/a/BAD.png", None)],
        ),
    ],
)  # fmt: skip
def test_filter_ruleset(
    make_camo: CamoFactory, tmp_path: Path, rules: str, cases: list[FilterCase]
) -> None:
    stub: Callable[[str, int], Any] = _any_name_to_site
    with go_config(make_camo, filter_ruleset=ruleset(tmp_path, rules), lookup=stub) as camo:
        for url, reason in cases:
            response = camo.get(url)
            if reason is None:
                assert response.headers.get("x-camo-error", "").startswith("cannot connect")
            else:
                assert_refused(response, 404, reason)


BLOCKED = 100_000  # a blocklist's size


def test_a_blocklist_of_a_hundred_thousand_domains(make_camo: CamoFactory, tmp_path: Path) -> None:
    """Rulesets are blocklists, and blocklists are long. Each URL was checked against every
    rule (55 ms a request and 15 s to start with 100,000); rules are indexed by domain, so a
    URL meets only its host's domains' rules and those any host can match, in file order."""
    lines = [f"deny|s|blocked{n}.test||" for n in range(BLOCKED)]
    lines += ["deny||*.images.test||/private/*", "deny||*|i|*/SECRET*"]
    path = ruleset(tmp_path, "\n".join(lines) + "\n")
    rules = Rules.load(path)
    assert [rule.text for rule in rules.candidates("a.blocked7.test")] == [
        "deny|s|blocked7.test||",
        "deny||*|i|*/SECRET*",
    ]
    assert [rule.text for rule in rules.candidates("a.images.test")] == [
        "deny||*.images.test||/private/*",
        "deny||*|i|*/SECRET*",
    ]
    stub: Callable[[str, int], Any] = _any_name_to_site
    with go_config(make_camo, filter_ruleset=path, lookup=stub) as camo:
        for url, reason in [
            ("http://x.blocked99999.test/a.png",
             "x.blocked99999.test/a.png matches deny rule deny|s|blocked99999.test||"),
            ("http://a.images.test/private/a.png",
             "a.images.test/private/a.png matches deny rule deny||*.images.test||/private/*"),
            ("http://images.test/x/secret.png",
             "images.test/x/secret.png matches deny rule deny||*|i|*/SECRET*"),
            ("http://blocked1.test.example/a.png", None),  # a suffix, not the domain
            ("http://notblocked1.test/a.png", None),
        ]:  # fmt: skip
            response = camo.get(url)
            if reason is None:
                assert response.headers.get("x-camo-error", "").startswith("cannot connect")
            else:
                assert_refused(response, 404, reason)


async def _any_name_to_site(host: str, port: int) -> list[str]:
    """Every name resolves to 127.0.0.2 (nothing listens on port 80 there: a passed rule
    shows as a connection failure, a filtered URL as the filter's refusal)."""
    await asyncio.sleep(0)
    return ["127.0.0.2"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("deny||ex*ample.com||*\n", "filter rule line 1: bad host glob 'ex*ample.com'"),
        ("deny||*example.com||*\n", "filter rule line 1: bad host glob '*example.com'"),
        ("deny||example*.com||*\n", "filter rule line 1: bad host glob 'example*.com'"),
        ("allow|x|example.com||\n", "filter rule line 1: unknown flag (host: s, path: i)"),
        ("allow||example.com||/a?b\n", "filter rule line 1: a path glob cannot hold a query"),
        ("allow|example.com\n", "filter rule line 1: expected allow|FLAGS|HOST|FLAGS|PATH"),
    ],
)
def test_malformed_ruleset_is_a_startup_error(
    make_camo: CamoFactory, tmp_path: Path, text: str, error: str
) -> None:
    with (
        pytest.raises(ValueError, match=re.escape(error)),
        go_config(make_camo, filter_ruleset=ruleset(tmp_path, text)),
    ):
        pass


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("big", "the filter ruleset is larger than 16777216 bytes: {path}"),
        ("not utf-8", "the filter ruleset is not UTF-8 text (invalid start byte): {path}"),
    ],
)
def test_a_ruleset_that_is_no_ruleset_is_refused_unread(
    make_camo: CamoFactory, tmp_path: Path, content: str, error: str
) -> None:
    """A 10 GB file in the ruleset's place (sparse: no disk taken) is refused after its
    first 16 MiB, not read whole into memory."""
    path = tmp_path / "rules.txt"
    if content == "big":
        with path.open("wb") as sparse:
            sparse.truncate(10 * 2**30)
    else:
        path.write_bytes(b"deny||example.com||\n\xff\n")
    with (
        pytest.raises(ValueError, match=re.escape(error.format(path=path))),
        go_config(make_camo, filter_ruleset=path),
    ):
        pass


def test_a_ruleset_of_junk_lines_logs_a_few_and_counts_the_rest(
    make_camo: CamoFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    junk = "".join(f"not a rule {number}\n" for number in range(100_000))
    with go_config(make_camo, filter_ruleset=ruleset(tmp_path, junk + "deny||example.com||\n")):
        pass
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("filter rules")]
    assert len(lines) == 21
    assert lines[0] == "filter rules: ignoring line 1 (not a rule): 'not a rule 0'"
    assert lines[-1] == "filter rules: 99980 more lines ignored (not rules)"
