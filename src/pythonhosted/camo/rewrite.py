"""``camoify``: point the images of rendered HTML (a project description) at camo.

The HTML is parsed with selectolax's Lexbor engine: a complete, actively maintained WHATWG
HTML5 parser and serializer in C, so the tree is the one a browser builds and the output is
well-formed whatever the input. It is also one of the fastest Python HTML parsers, which
matters when a page has thousands of descriptions to rewrite. (html5lib, which Warehouse used,
has had no release since 2020; lxml's libxml2 parser is not an HTML5 parser.)

Input with nothing to rewrite is returned unchanged, byte for byte.

Lexbor's tree builder walks the stack of open elements at each block-level start tag, so input
nested N elements deep costs O(N²): 200,000 nested ``<div>`` (2 MB) took 227 s, 50,000 took
4.7 s. Browsers stop nesting long before (Chromium at 512 levels); input nested deeper than
:data:`MAX_DEPTH` is refused with :class:`NestedTooDeep` after a linear scan, before parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborDocumentOptions, LexborHTMLParser, LexborNode

from pythonhosted.camo.signatures import Encoding, sign_url

_GITHUB_BLOB = re.compile(r"^https?://github\.com/([^/?#]+)/([^/?#]+)/blob/([^?#]+)")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_SPACE = " \t\n\r\f"
#: Deepest element nesting camoify parses (Chromium's parser nests no deeper than 512).
MAX_DEPTH = 512
# Where a tag starts, as the HTML tokenizer sees it ("<" then a letter, or "</" then one). The
# possessive name cannot backtrack, and the scan goes on after the tag's ">": linear however
# the input is made (a lazy match to ">" took 105 s for 4 KB of "<a<a<a…").
_TAG_START = re.compile(r"<(/?)([A-Za-z][^\s/>]*+)")
# Elements that never hold others (void) or whose end tag is optional (the parser closes them
# itself, so they do not nest): not counted towards the depth.
_NOT_NESTING = frozenset(
    {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr", "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th",
        "thead", "tbody", "tfoot", "rb", "rt", "rtc", "rp", "colgroup", "caption",
    }
)  # fmt: skip


class NestedTooDeep(ValueError):
    """The HTML nests elements deeper than :data:`MAX_DEPTH`: refused, not parsed."""


@dataclass(frozen=True)
class Camoified:
    html: str
    #: image URLs left as they were because they are relative (camo needs absolute URLs)
    relative: tuple[str, ...]


def github_raw(url: str) -> str:
    """``github.com/o/r/blob/ref/path`` (an HTML page) -> that file on raw.githubusercontent.com."""
    match = _GITHUB_BLOB.match(url)
    if match is None:
        return url
    owner, repo, rest = match.groups()
    return f"https://raw.githubusercontent.com/{owner}/{repo}/{rest}"


@dataclass
class _Rewriter:
    key: bytes
    base: str
    encoding: Encoding
    origins: tuple[str, ...]
    relative: list[str]

    def url(self, url: str) -> str:
        """The camo URL for one image URL, or the URL itself when it is not to be proxied."""
        text = url.strip(_SPACE)
        if not text or text.startswith(self.origins):
            return url
        if text.startswith("//"):
            text = "https:" + text
        scheme = _SCHEME.match(text)
        if scheme is None:
            self.relative.append(text)
            return url
        if scheme.group(1).lower() not in ("http", "https"):
            return url  # data: images are inline already; other schemes cannot be fetched
        return sign_url(github_raw(text), self.key, base=self.base, encoding=self.encoding)

    def srcset(self, value: str) -> str:
        return ", ".join(
            f"{self.url(url)} {descriptor}".rstrip() for url, descriptor in split_srcset(value)
        )


def split_srcset(value: str) -> list[tuple[str, str]]:
    """``srcset`` candidates as (URL, descriptors), per the HTML standard's parsing rules:
    a URL runs to whitespace (trailing commas end it), descriptors run to the next comma
    outside parentheses."""
    candidates: list[tuple[str, str]] = []
    pos, end = 0, len(value)
    while True:
        while pos < end and (value[pos] in _SPACE or value[pos] == ","):
            pos += 1
        if pos >= end:
            return candidates
        start = pos
        while pos < end and value[pos] not in _SPACE:
            pos += 1
        url = value[start:pos]
        if url.endswith(","):
            candidates.append((url.rstrip(","), ""))
            continue
        start, depth = pos, 0
        while pos < end and (value[pos] != "," or depth):
            if value[pos] == "(":
                depth += 1
            elif value[pos] == ")":
                depth = max(depth - 1, 0)
            pos += 1
        candidates.append((url, " ".join(value[start:pos].split())))


def camoify(
    html: str,
    *,
    key: bytes,
    base: str,
    encoding: Encoding = "hex",
    origin: str | None = None,
) -> Camoified:
    """Rewrite ``<img src>``, ``<img srcset>`` and ``<picture><source srcset>`` of an HTML
    fragment into camo URLs under ``base``.

    Left alone: URLs already under ``base``, URLs under the site's own ``origin``, ``data:``
    and other non-http(s) URLs, and relative URLs (which are also reported, since camo cannot
    fetch them). GitHub ``/blob/`` links become raw file URLs before signing, so they proxy to
    the image rather than to GitHub's HTML page.
    """
    _check_depth(html)
    origins = tuple(f"{prefix.rstrip('/')}/" for prefix in (base, origin) if prefix)
    rewriter = _Rewriter(key, base, encoding, origins, [])
    tree = LexborHTMLParser(html, is_fragment=True, options=LexborDocumentOptions.WO_EVENTS)
    changed = False
    nodes: list[LexborNode] = tree.css("img, picture > source")
    for node in nodes:
        for name in ("src", "srcset"):
            if name == "src" and node.tag != "img":
                continue
            value = node.attrs.get(name)
            if value is None:
                continue
            new = rewriter.url(value) if name == "src" else rewriter.srcset(value)
            if new != value:
                node.attrs[name] = new
                changed = True
    output = (tree.html or "") if changed else html
    return Camoified(output, tuple(rewriter.relative))


def _check_depth(html: str) -> None:
    """NestedTooDeep when start tags, less their end tags, run deeper than MAX_DEPTH (an
    estimate from the tags alone, linear in the input; see the module doc).

    A tag is taken to end at the first ">" after its name, which is where the parser's ends
    or before (a ">" in a quoted value): so no tag the parser sees is skipped, and text inside
    such a value can only add to the estimate.
    """
    depth = 0
    position = 0
    while (match := _TAG_START.search(html, position)) is not None:
        end = html.find(">", match.end())
        if end < 0:  # an unfinished tag at the very end: the parser drops it
            return
        position = end + 1
        closing, name = match.groups()
        if html[end - 1] == "/" or name.lower() in _NOT_NESTING:
            continue
        if closing:
            depth = max(0, depth - 1)
            continue
        depth += 1
        if depth > MAX_DEPTH:
            raise NestedTooDeep(f"HTML nested deeper than {MAX_DEPTH} elements")
