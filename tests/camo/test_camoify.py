"""camoify on description HTML as readme_renderer produces it (Markdown, reST, raw HTML)."""

from __future__ import annotations

import pytest

from pythonhosted.camo import NestedTooDeep, camoify, sign_url
from pythonhosted.camo.rewrite import MAX_DEPTH, github_raw, split_srcset

KEY = b"test-key"
BASE = "https://camo.pypi.example"


def c(url: str) -> str:
    return sign_url(url, KEY, base=BASE)


def run(html: str, **kwargs: str) -> tuple[str, tuple[str, ...]]:
    result = camoify(html, key=KEY, base=BASE, **kwargs)
    return result.html, result.relative


def test_markdown_badges_and_screenshot() -> None:
    html = (
        "<h1>fastthing</h1>\n"
        '<p><a href="https://pypi.org/project/fastthing" rel="nofollow">'
        '<img alt="PyPI" src="https://img.shields.io/pypi/v/fastthing.svg"></a>\n'
        '<a href="https://github.com/o/fastthing/actions" rel="nofollow">'
        '<img alt="CI" src="https://github.com/o/fastthing/actions/workflows/ci.yml/badge.svg?branch=main&amp;event=push"></a></p>\n'
        "<p>Fast &amp; small. Try <code>pip install fastthing</code>:</p>\n"
        '<p><img alt="demo" src="http://example.com/demo.gif" width="600"></p>\n'
    )
    expected = (
        "<h1>fastthing</h1>\n"
        '<p><a href="https://pypi.org/project/fastthing" rel="nofollow">'
        f'<img alt="PyPI" src="{c("https://img.shields.io/pypi/v/fastthing.svg")}"></a>\n'
        '<a href="https://github.com/o/fastthing/actions" rel="nofollow">'
        '<img alt="CI" src="'
        + c(
            "https://github.com/o/fastthing/actions/workflows/ci.yml/badge.svg?branch=main&event=push"
        )
        + '"></a></p>\n'
        "<p>Fast &amp; small. Try <code>pip install fastthing</code>:</p>\n"
        f'<p><img alt="demo" src="{c("http://example.com/demo.gif")}" width="600"></p>\n'
    )
    assert run(html) == (expected, ())


def test_rest_with_github_blob_and_relative_images() -> None:
    html = (
        '<div class="section" id="usage">\n<h2>Usage</h2>\n'
        '<img alt="logo" class="align-center" '
        'src="https://github.com/o/r/blob/main/docs/logo.png?raw=true">\n'
        '<img alt="screenshot" src="docs/screenshot.png">\n'
        '<img alt="rooted" src="/static/x.png">\n'
        "</div>\n"
    )
    expected = (
        '<div class="section" id="usage">\n<h2>Usage</h2>\n'
        '<img alt="logo" class="align-center" '
        f'src="{c("https://raw.githubusercontent.com/o/r/main/docs/logo.png")}">\n'
        '<img alt="screenshot" src="docs/screenshot.png">\n'
        '<img alt="rooted" src="/static/x.png">\n'
        "</div>\n"
    )
    assert run(html) == (expected, ("docs/screenshot.png", "/static/x.png"))


def test_picture_srcset_data_uris_and_urls_left_alone() -> None:
    already = c("https://example.com/old.png")
    html = (
        "<picture>\n"
        '  <source media="(prefers-color-scheme: dark)" '
        'srcset="https://example.com/dark.png 1x, https://example.com/dark@2x.png 2x">\n'
        '  <img alt="logo" src="https://example.com/light.png" '
        'srcset="//cdn.example.com/light@2x.png 2x">\n'
        "</picture>\n"
        '<img src="data:image/png;base64,iVBORw0KGgo=">'
        f'<img src="{already}">'
        '<img src="https://pypi.example/static/pypi.svg">'
        '<img src="mailto:someone@example.com">'
    )
    expected = (
        "<picture>\n"
        '  <source media="(prefers-color-scheme: dark)" '
        f'srcset="{c("https://example.com/dark.png")} 1x, '
        f'{c("https://example.com/dark@2x.png")} 2x">\n'
        f'  <img alt="logo" src="{c("https://example.com/light.png")}" '
        f'srcset="{c("https://cdn.example.com/light@2x.png")} 2x">\n'
        "</picture>\n"
        '<img src="data:image/png;base64,iVBORw0KGgo=">'
        f'<img src="{already}">'
        '<img src="https://pypi.example/static/pypi.svg">'
        '<img src="mailto:someone@example.com">'
    )
    assert run(html, origin="https://pypi.example") == (expected, ())


def test_broken_markup_comes_out_well_formed() -> None:
    html = (
        "<p>Intro<b>bold <img src=https://e.com/a.png alt='a \"q\"'>\n<table><tr><td>cell</table>"
    )
    expected = (
        f'<p>Intro<b>bold <img src="{c("https://e.com/a.png")}" alt="a &quot;q&quot;">\n'
        "</b></p><table><tbody><tr><td>cell</td></tr></tbody></table>"
    )
    assert run(html) == (expected, ())


def test_nothing_to_rewrite_returns_input_unchanged() -> None:
    html = "<p>No images <b>here<br/><img src='data:image/gif;base64,R0lGOD=='>"
    assert run(html) == (html, ())


def test_srcset_parsing_follows_the_html_standard() -> None:
    assert split_srcset(" a.png 1x,b.png  2x ,c,d.png 100w, e.png") == [
        ("a.png", "1x"),
        ("b.png", "2x"),
        ("c,d.png", "100w"),
        ("e.png", ""),
    ]
    assert split_srcset("a.png,, b.png") == [("a.png", ""), ("b.png", "")]


def test_github_raw() -> None:
    assert (
        github_raw("https://github.com/pypa/pip/blob/main/docs/html/logo.png?raw=true")
        == "https://raw.githubusercontent.com/pypa/pip/main/docs/html/logo.png"
    )
    assert github_raw("https://github.com/pypa/pip/raw/main/x.png") == (
        "https://github.com/pypa/pip/raw/main/x.png"
    )


def test_html_nested_deeper_than_browsers_nest_is_refused_before_parsing() -> None:
    """The parser's cost grows with the square of the nesting: 200,000 nested <div> (2 MB)
    took 227 s. Past MAX_DEPTH it is refused after a linear scan."""
    image = '<img src="http://example.com/x.png">'
    with pytest.raises(NestedTooDeep, match=r"^HTML nested deeper than 512 elements$"):
        run("<div>" * 20_000 + image + "</div>" * 20_000)
    with pytest.raises(NestedTooDeep):
        run("<ul><li>" * (MAX_DEPTH + 1) + image)  # li closes itself; ul nests
    # As deep as allowed, and sloppy HTML whose tags close themselves, are rewritten.
    deepest = "<div>" * MAX_DEPTH + image + "</div>" * MAX_DEPTH
    assert run(deepest)[0] == deepest.replace(
        "http://example.com/x.png", c("http://example.com/x.png")
    )
    sloppy = "<p>para <br>" * 20_000 + image
    assert run(sloppy)[0].count(c("http://example.com/x.png")) == 1
    balanced = "<div><span>" + image + "</span></div>"
    assert run(balanced * 20_000)[0].count(c("http://example.com/x.png")) == 20_000


def test_the_depth_scan_cannot_be_hidden_from_or_made_slow() -> None:
    """What the parser takes as text ("< ", comments, quoted values) hides no nesting from the
    scan, and tags that never end cost it one pass (a backtracking scan took 105 s for 4 KB
    of "<a<a<a…"; the suite's per-test timeout ends such a test)."""
    image = '<img src="http://example.com/x.png">'
    for hiding in ("< <div>", '<div title="<">', '<div title=">">', "<!-- x --><div>"):
        with pytest.raises(NestedTooDeep):
            run(hiding * (MAX_DEPTH + 1) + image)
    for unending in ("<a", "<a x", "</a", "<a/"):
        html = image + unending * 200_000
        assert run(html)[0].startswith(f'<img src="{c("http://example.com/x.png")}">')
