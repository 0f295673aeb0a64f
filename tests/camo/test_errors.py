"""No bare 500: every answer camo gives, to any URL, carries its headers and a reason.

A URL camo cannot use (a host with an empty or over-long label, a bad port, broken credentials,
a redirect to any of those or to raw bytes) is a refusal with ``X-Camo-Error``, counted like
any other; a bug is a 500 with the same headers, logged with its traceback and counted. The
fuzz test throws thousands of generated hostile URLs at a running camo to hold the class.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import pytest

from pythonhosted.camo.headers import CSP

if TYPE_CHECKING:
    from conftest import Camo, CamoFactory, RawUpstream, Upstream

FUZZ_SEED = 20240613
FUZZ_URLS = 3000
SECURITY = {
    "x-content-type-options": "nosniff",
    "x-xss-protection": "1; mode=block",
    "content-security-policy": CSP.decode(),
    "access-control-allow-origin": "*",
    "server": "pythonhosted-camo",
}


def has_camo_headers(response: httpx.Response) -> bool:
    return all(response.headers.get(name) == value for name, value in SECURITY.items())


def refusal(response: httpx.Response) -> tuple[int, str]:
    assert has_camo_headers(response), response.headers
    return response.status_code, response.headers.get("x-camo-error", "")


def failures(camo: Camo, reason: str) -> float:
    prefix = f'camo_responses_failed_total{{reason="{reason}"}} '
    for line in camo.client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1..:9001/a", "host '127.0.0.1..' is not a valid DNS name"),
        ("http://a..b/x.png", "host 'a..b' is not a valid DNS name"),
        ("http://.images.test/x.png", "host '.images.test' is not a valid DNS name"),
        (f"http://{'a' * 64}.test/x.png", f"host '{'a' * 64}.test' is not a valid DNS name"),
        ("http://" + "abcdefghi." * 26 + "test/", "host name longer than 253 characters"),
        ("http://-images.test/x.png", "host '-images.test' is not a valid DNS name"),
        ("http://images-.test/x.png", "host 'images-.test' is not a valid DNS name"),
        ("http://ima%00ges.test/x.png", "host 'ima%00ges.test' is not a valid DNS name"),
        ("http://a b.test/x.png", "host 'a b.test' is not a valid DNS name"),
        ("http://xn--/x.png", "host 'xn--' is not a valid DNS name"),
        ("http://images.test:0/x.png", "port 0 is not a destination"),
        ("http://images.test:65536/x.png", "not a valid URL"),
        ("http://images.test:8o/x.png", "not a valid URL"),
        ("http://[::1/x.png", "not a valid URL"),
        ("http://1.2.3.4.5/x.png", "host '1.2.3.4.5' is not a valid IPv4 address"),
        ("http://:@images.test/x.png", "URLs with credentials are not allowed"),
    ],
)
def test_unusable_urls_are_refusals(camo: Camo, url: str, reason: str) -> None:
    assert refusal(camo.get(url)) == (404, reason)


def test_unusable_url_refusals_are_counted(make_camo: CamoFactory) -> None:
    with make_camo() as camo:
        for _ in range(3):
            camo.get("http://127.0.0.1..:9001/a")
        assert failures(camo, "url") == 3


def test_control_characters_in_allowed_credentials(make_camo: CamoFactory) -> None:
    with make_camo(allow_credential_urls=True) as camo:
        response = camo.get("http://us%0D%0Aer:pw@images.test/x.png")
        assert refusal(response) == (404, "control characters in the URL's credentials")


def test_name_the_resolver_cannot_encode(camo: Camo, upstream: Upstream) -> None:
    # valid per the name rule, but the resolver's IDNA step refuses it: still a refusal
    name = "a" * 63 + "." + "b" * 63 + ".test"
    assert refusal(camo.get(f"http://{name}:{upstream.port}/png")) == (
        404,
        f"cannot resolve {name}",
    )


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1..:9001/a",
        "http://a..b/x.png",
        "http://images.test:0/x.png",
        "http://[::1/x.png",
        "//a..b/x.png",
    ],
)
def test_unusable_redirect_targets_are_refusals(
    camo: Camo, upstream: Upstream, target: str
) -> None:
    response = camo.get(f"{upstream.base}/redirect?to={quote(target, safe='')}")
    status, reason = refusal(response)
    assert status == 404
    assert reason in {
        "host '127.0.0.1..' is not a valid DNS name",
        "host 'a..b' is not a valid DNS name",
        "port 0 is not a destination",
        "redirect to an invalid URL",
    }


def test_raw_bytes_in_location_are_percent_encoded(camo: Camo, raw_upstream: RawUpstream) -> None:
    raw_upstream.replies["/latin1"] = b"HTTP/1.1 302 Found\r\nLocation: /caf\xe9.png\r\n\r\n"
    raw_upstream.replies["/caf%E9.png"] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 8\r\n\r\n\x89PNG\r\n\x1a\n"
    )
    response = camo.get(raw_upstream.base + "/latin1")
    assert response.status_code == 200
    assert response.content == b"\x89PNG\r\n\x1a\n"


def test_raw_bytes_in_a_location_host_are_refused(camo: Camo, raw_upstream: RawUpstream) -> None:
    raw_upstream.replies["/latin1-host"] = (
        b"HTTP/1.1 302 Found\r\nLocation: http://h\xe9.test/x.png\r\n\r\n"
    )
    assert refusal(camo.get(raw_upstream.base + "/latin1-host")) == (
        404,
        "host 'h%e9.test' is not a valid DNS name",
    )


async def exploding_lookup(host: str, port: int) -> Sequence[str]:
    raise RuntimeError("resolver bug")


def test_unexpected_exception_is_a_500_with_camo_headers(
    make_camo: CamoFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with make_camo(lookup=exploding_lookup) as camo:
        with caplog.at_level(logging.ERROR, logger="pythonhosted.camo"):
            response = camo.get("http://images.test/x.png")
        assert refusal(response) == (500, "internal error")
        assert response.text == "internal error\n"
        assert failures(camo, "internal") == 1
        assert 'camo_responses_total{code="500"} 1.0' in camo.client.get("/metrics").text
    records = [r for r in caplog.records if r.name == "pythonhosted.camo.proxy"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert "RuntimeError: resolver bug" in caplog.text


# -- fuzzing --

SCHEMES = ["http", "https", "HTTP", "ftp", "javascript", "data", "", "http:", "ht tp"]
USERINFO = ["", "", "", "u:p@", "@", ":@", "u%00:p@", "%ff@", "a@b@", "u:p:q@", "\u00e9@"]
HOSTS = [
    "images.test",
    "127.0.0.2",
    "127.0.0.1..",
    "a..b",
    ".a",
    "a.",
    "..",
    ".",
    "",
    "-a.test",
    "a-.test",
    "x" * 64 + ".test",
    ("a" * 63 + ".") * 5,
    "xn--",
    "xn--zz.test",
    "xn--a.xn--",
    "\u00f6.test",
    "\u2603.test",
    "\u3002test",
    "a\u3002\u3002b",
    "a b",
    "a%20b",
    "a%00b",
    "a\tb",
    "[::1",
    "[::1]",
    "[fe80::1%25eth0]",
    "[::ffff:127.0.0.2]",
    "[v1.x]",
    "0x7f.1",
    "0177.0.0.2",
    "1.2.3.256",
    "1.2.3.4.5",
    "127.0.0.1.",
    "metadata.test",
    "private.test",
    "mixed.test",
    "nosuch.test",
    "images.test.",
    "a" * 300,
]
PORTS = ["", ":", ":0", ":65536", ":-1", ":99999999999", ":abc", ":80", ":8 0", "::80"]
PATHS = [
    "/png",
    "",
    "/",
    "/%",
    "/%zz",
    "/%00",
    "/\u00fc",
    "/a?b=\r\nSet-Cookie: x",
    "/#frag",
    "/" + "a" * 1000,
    "/redirect?to=",
    "/status/500",
    "/html",
    "/slow",
]
HOSTILE_CHARS = "\x00\r\n\t :@/?#[]%.\\\u00e9\u3002\ufffd\U0001f600-_~"


def hostile_url(rng: random.Random, port: int) -> str:
    """One URL from hostile parts, or a good one, then sometimes mutated further, sometimes
    behind a redirect."""
    if rng.random() < 0.3:
        url = f"http://{rng.choice(['images.test', '127.0.0.2', '0x7f.0.0.2'])}:{port}/png"
    else:
        url_port = rng.choice([*PORTS, f":{port}", f":{port}"])
        url = rng.choice(SCHEMES) + "://" + rng.choice(USERINFO) + rng.choice(HOSTS) + url_port
        url += rng.choice(PATHS)
    for _ in range(rng.choice([0, 0, 1, 2, 4])):
        where = rng.randrange(len(url) + 1)
        url = url[:where] + rng.choice(HOSTILE_CHARS) + url[where:]
    if rng.random() < 0.2:
        url = f"http://127.0.0.2:{port}/redirect?to={quote(url, safe='')}"
    return url


@pytest.fixture(scope="module")
def fuzzed(make_camo: CamoFactory) -> Iterator[Camo]:
    with make_camo(timeout="300ms") as camo:
        yield camo


def test_fuzzed_urls_always_get_camo_headers(fuzzed: Camo, upstream: Upstream) -> None:
    rng = random.Random(FUZZ_SEED)
    statuses: dict[int, int] = {}
    for number in range(FUZZ_URLS):
        url = hostile_url(rng, upstream.port)
        encoding = rng.choice(["hex", "base64"])
        response = fuzzed.client.get(fuzzed.url(url, encoding))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert has_camo_headers(response), (number, url, response.headers)
        assert response.status_code != 500, (number, url, response.text)
        if response.status_code != 200:
            assert response.headers["x-camo-error"], (number, url)
    # the generator reaches both refusals and real fetches
    assert statuses.get(200, 0) > 0
    assert statuses.get(404, 0) > FUZZ_URLS // 4


def test_fuzzed_location_headers(fuzzed: Camo, raw_upstream: RawUpstream) -> None:
    rng = random.Random(FUZZ_SEED + 1)
    pieces = [b"http://", b"https://", b"//", b"/", b"\xe9", b"\xff", b"%", b"..", b"@", b":0",
              b"127.0.0.1..", b"a..b", b"[::1", b"xn--", b"\t", b" ", b"?", b"#", b"\\",
              b"images.test", b"127.0.0.2", b":%d" % raw_upstream.port, b"/png"]  # fmt: skip
    for number in range(500):
        location = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        path = f"/fuzz-location/{number}"
        raw_upstream.replies[path] = b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n\r\n"
        response = fuzzed.get(raw_upstream.base + path)
        assert has_camo_headers(response), (location, response.headers)
        assert response.status_code != 500, (location, response.text)
        assert response.headers.get("x-camo-error"), location
