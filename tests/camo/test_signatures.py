"""Camo URLs: both encodings and the legacy query form verify; anything else is a 404 before
any upstream request (spec rules 1-2)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from pythonhosted.camo import sign_url
from pythonhosted.camo.signatures import verify

if TYPE_CHECKING:
    from conftest import Camo, Upstream

KEY = b"test-key"

TARGET = "https://example.com/logo.png"
# Independently computed: printf %s URL | openssl dgst -sha1 -hmac test-key
HEX = (
    "/aa485e45ca1a7d73f9ec2fb5ddcdf950687c87ee"
    "/68747470733a2f2f6578616d706c652e636f6d2f6c6f676f2e706e67"
)
B64 = "/qkheRcoafXP57C-13c35UGh8h-4/aHR0cHM6Ly9leGFtcGxlLmNvbS9sb2dvLnBuZw"


def test_sign_url_known_vectors() -> None:
    assert sign_url(TARGET, KEY) == HEX
    assert sign_url(TARGET, KEY, encoding="base64") == B64
    assert sign_url(TARGET, KEY, base="https://camo.example/") == "https://camo.example" + HEX


def test_verify_accepts_all_three_forms() -> None:
    assert verify(KEY, HEX) == TARGET
    assert verify(KEY, B64) == TARGET
    legacy_query = b"url=" + quote(TARGET, safe="").encode()
    assert verify(KEY, "/aa485e45ca1a7d73f9ec2fb5ddcdf950687c87ee", legacy_query) == TARGET


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (HEX.replace("/aa48", "/ab48"), b""),  # one digest bit off
        (HEX.replace("aa485e45ca1a7d73f9ec2fb5ddcdf950687c87ee", "aa485e45ca1a7d73"), b""),  # short
        (
            HEX.replace(
                "aa485e45ca1a7d73f9ec2fb5ddcdf950687c87ee", "aa485e45ca1a7d73f9ec2fb5ddcdf950687c87"
            ),
            b"",
        ),
        (HEX + "0a", b""),  # URL altered after signing
        (HEX.replace("/6874", "/zz74"), b""),  # not hex
        (B64.replace("/qkhe", "/qkhf"), b""),
        (B64[:-2], b""),  # URL part truncated
        (B64.replace("-", "+"), b""),  # standard alphabet is not the URL-safe one
        ("/aa485e45ca1a7d73f9ec2fb5ddcdf950687c87ee", b"url=https%3A%2F%2Fexample.com%2Fother.png"),
        ("/aa485e45ca1a7d73f9ec2fb5ddcdf950687c87ee", b""),
        ("/aa485e45ca1a7d73f9ec2fb5ddcdf950687c87ee", b"url=a&url=b"),
        ("/", b""),
        ("/a/b/c", b""),
    ],
)
def test_verify_rejects(path: str, query: bytes) -> None:
    assert verify(KEY, path, query) is None
    assert verify(b"other-key", HEX) is None


def test_proxy_serves_every_form(camo: Camo, upstream: Upstream) -> None:
    target = upstream.base + "/png"
    legacy = sign_url(target, KEY).split("/")[1]
    for url in (
        camo.url(target),
        camo.url(target, encoding="base64"),
        f"{camo.base}/{legacy}?url={quote(target, safe='')}",
    ):
        assert camo.client.get(url).status_code == 200
    assert len(upstream.hits) == 3


@pytest.mark.parametrize(
    "path",
    [
        HEX.replace("/aa48", "/ab48"),
        HEX[:30],
        B64[:-3],
        "/not-a-digest/not-a-url",
    ],
)
def test_bad_signatures_are_404_without_upstream_request(
    camo: Camo, upstream: Upstream, path: str
) -> None:
    response = camo.client.get(path)
    assert response.status_code == 404
    assert response.headers["x-camo-error"] == "bad signature or encoding"
    assert upstream.hits == []


@pytest.mark.parametrize(
    "target",
    [
        "ftp://127.0.0.2/x.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "/relative.png",
        "http://",
    ],
)
def test_signed_non_http_urls_are_404(camo: Camo, upstream: Upstream, target: str) -> None:
    response = camo.get(target)
    assert response.status_code == 404
    assert response.headers["x-camo-error"] == "not an absolute http(s) URL"
    assert upstream.hits == []


def test_only_get_and_head(camo: Camo, upstream: Upstream) -> None:
    response = camo.client.post(camo.url(upstream.base + "/png"))
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.headers["x-camo-error"] == "method POST not allowed"
    long = camo.client.request("GET" * 2000, camo.url(upstream.base + "/png"))
    assert long.status_code == 405  # the client's 6 KB "method" is not echoed back
    assert long.headers["x-camo-error"] == f"method {'GET' * 5}G... not allowed"
    assert upstream.hits == []
