"""Content-Type is exactly one media type, relayed normalised (spec rule 18).

A raw upstream sends each header value byte for byte, so lists, duplicates and malformed
values reach camo exactly as a hostile server would send them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pythonhosted.camo.mediatype import BadMediaType, parse_media_type

if TYPE_CHECKING:
    from conftest import Camo, CamoFactory, RawUpstream

PNG = b"\x89PNG\r\n\x1a\n" + bytes(100)


def reply(raw_upstream: RawUpstream, path: str, *content_types: bytes, body: bytes = PNG) -> str:
    """Serve ``body`` at ``path`` with these Content-Type header lines; the URL."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
    head += b"".join(b"Content-Type: " + value + b"\r\n" for value in content_types)
    raw_upstream.replies[path] = head + b"\r\n" + body
    return raw_upstream.base + path


@pytest.mark.parametrize(
    ("sent", "relayed"),
    [
        (b"image/png", "image/png"),
        (b"image/PNG", "image/png"),
        (b"  image/gif  ", "image/gif"),
        (b"Image/SVG+XML;Charset=UTF-8", "image/svg+xml; charset=UTF-8"),
        (b"image/svg+xml; charset=UTF-8", "image/svg+xml; charset=UTF-8"),
        (b'image/svg+xml; charset="utf-8"', "image/svg+xml; charset=utf-8"),
        (b"image/png;", "image/png"),
        (b"image/png ; ; a=1 ;", "image/png; a=1"),
        (b'image/png; x="text/html"', 'image/png; x="text/html"'),
        (b'image/png; x="a \\"b\\" c"', 'image/png; x="a \\"b\\" c"'),
        (b'image/png; x=""', 'image/png; x=""'),
        (b"image/vnd.microsoft.icon", "image/vnd.microsoft.icon"),
    ],
)
def test_one_media_type_is_relayed_normalised(
    camo: Camo, raw_upstream: RawUpstream, sent: bytes, relayed: str
) -> None:
    response = camo.get(reply(raw_upstream, f"/ct/{sent.hex()}", sent))
    assert response.status_code == 200
    assert response.headers["content-type"] == relayed
    assert response.content == PNG


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        (b"image/png, text/html; charset=UTF-8",
         "Content-Type is a list: 'image/png, text/html; charset=UTF-8'"),
        (b"image/png,text/html; charset=UTF-8",
         "Content-Type is a list: 'image/png,text/html; charset=UTF-8'"),
        (b"image/png text/html", "malformed Content-Type: 'image/png text/html'"),
        (b"image/png%;text/html", "malformed Content-Type: 'image/png%;text/html'"),
        (b"image/png; charset=UTF-8;text/html",
         "malformed Content-Type: 'image/png; charset=UTF-8;text/html'"),
        (b"image/png; a=1; A=2", "Content-Type parameter 'a' given twice"),
        (b"", "empty Content-Type"),
        (b"   ", "empty Content-Type"),
        (b"image", "malformed Content-Type: 'image'"),
        (b"image/", "malformed Content-Type: 'image/'"),
        (b"/png", "malformed Content-Type: '/png'"),
        (b"image/png/x", "malformed Content-Type: 'image/png/x'"),
        (b"image /png", "malformed Content-Type: 'image /png'"),
        (b"image/png; a", "malformed Content-Type: 'image/png; a'"),
        (b"image/png; a=", "malformed Content-Type: 'image/png; a='"),
        (b"image/png; a =1", "malformed Content-Type: 'image/png; a =1'"),
        (b'image/png; a="open', "malformed Content-Type: 'image/png; a=\"open'"),
        (b"image/png; a=b c", "malformed Content-Type: 'image/png; a=b c'"),
        (b'"image/png"', "malformed Content-Type: '\"image/png\"'"),
        (b"image/p\xe9ng", "malformed Content-Type: 'image/p\\xe9ng'"),
        (b"text/html", "content type text/html not allowed"),
        (b"text/html; x=image/png", "malformed Content-Type: 'text/html; x=image/png'"),
        (b'text/html; x="image/png"', "content type text/html not allowed"),
        (b"imagex/png", "content type imagex/png not allowed"),
    ],
)  # fmt: skip
def test_anything_but_one_media_type_is_refused(
    camo: Camo, raw_upstream: RawUpstream, sent: bytes, reason: str
) -> None:
    response = camo.get(reply(raw_upstream, f"/bad-ct/{sent.hex()}", sent))
    assert response.status_code == 403
    assert response.headers["x-camo-error"] == reason
    assert response.content == (reason + "\n").encode()  # the reason, never upstream's body


@pytest.mark.parametrize(
    "lines",
    [
        (b"image/png", b"text/html"),
        (b"text/html", b"image/png"),
        (b"image/png", b"image/png"),
    ],
)
def test_two_content_type_headers_are_refused(
    camo: Camo, raw_upstream: RawUpstream, lines: tuple[bytes, bytes]
) -> None:
    response = camo.get(reply(raw_upstream, f"/two-ct/{b'+'.join(lines).hex()}", *lines))
    assert response.status_code == 403
    assert response.headers["x-camo-error"] == "more than one Content-Type header"


def test_generic_type_with_parameters_is_sniffed(camo: Camo, raw_upstream: RawUpstream) -> None:
    response = camo.get(reply(raw_upstream, "/octet-params", b"application/octet-stream; x=1"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"


def test_empty_type_is_not_sniffed(camo: Camo, raw_upstream: RawUpstream) -> None:
    response = camo.get(reply(raw_upstream, "/empty-ct-png", b""))
    assert response.headers["x-camo-error"] == "empty Content-Type"


def test_head_gets_the_normalised_type(camo: Camo, raw_upstream: RawUpstream) -> None:
    url = reply(raw_upstream, "/head-ct", b"IMAGE/Png ;Q=1")
    response = camo.client.head(camo.url(url))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png; q=1"


def test_video_type_is_parsed_too(make_camo: CamoFactory, raw_upstream: RawUpstream) -> None:
    url = reply(raw_upstream, "/video-ct", b'Video/MP4; codecs="avc1.42E01E, mp4a.40.2"')
    with make_camo(allow_video=True) as camo:
        response = camo.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == 'video/mp4; codecs="avc1.42E01E, mp4a.40.2"'


def test_parser_bounds_long_values() -> None:
    # long values parse the same, outside the memo
    value = b"image/png; x=" + b"a" * 5000
    assert parse_media_type(value).parameters == (("x", b"a" * 5000),)
    with pytest.raises(BadMediaType, match="list"):
        parse_media_type(b"image/png, " + b"a" * 5000)
