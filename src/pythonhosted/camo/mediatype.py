"""Upstream's Content-Type, parsed strictly as exactly one media type (spec rule 18).

Browsers read a malformed or listed type loosely (``image/png, text/html`` may render as HTML),
so anything but one well-formed ``type/subtype`` with RFC 9110 parameters is refused, and the
decision "is it an image" and the type relayed both come from the parsed value alone, never
from the bytes upstream sent. Grammar (RFC 9110 sections 5.6.2, 5.6.4, 5.6.6, 8.3.1)::

    media-type = type "/" subtype parameters
    parameters = *( OWS ";" OWS [ parameter ] )
    parameter  = token "=" ( token / quoted-string )

Type, subtype and parameter names are case-insensitive and relayed lower-case; a parameter
named twice is refused (which value would a browser believe?).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_OWS = rb"[ \t]*"
_PARAMETER = rb"(" + _TOKEN + rb")=(" + _TOKEN + rb"|" + _QUOTED + rb")"
_MEDIA_TYPE = re.compile(
    _OWS
    + rb"("
    + _TOKEN
    + rb")/("
    + _TOKEN
    + rb")((?:"
    + _OWS
    + rb";"
    + _OWS
    + rb"(?:"
    + _PARAMETER
    + rb")?)*)"
    + _OWS
)
_PARAMETERS = re.compile(_PARAMETER)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)
_NEEDS_QUOTE = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
#: values up to this length are memoised (the same few types arrive again and again)
MEMO_VALUE_BYTES = 256


class BadMediaType(ValueError):
    """The value is not exactly one media type; the message says what is wrong."""


@dataclass(frozen=True)
class MediaType:
    type: str  # lower-case
    subtype: str  # lower-case
    parameters: tuple[tuple[str, bytes], ...]  # lower-case names, unquoted values

    @property
    def essence(self) -> str:
        return f"{self.type}/{self.subtype}"

    def header(self) -> bytes:
        """The normalised header value: ``type/subtype; name=value``, quoted only if needed."""
        parts = [self.essence.encode("ascii")]
        for name, value in self.parameters:
            if not value or _NEEDS_QUOTE.search(value):
                value = b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
            parts.append(name.encode("ascii") + b"=" + value)
        return b"; ".join(parts)


def parse_media_type(value: bytes) -> MediaType:
    """The one media type ``value`` spells; BadMediaType otherwise."""
    if len(value) <= MEMO_VALUE_BYTES:
        return _parse_memo(value)
    return _parse(value)


@functools.lru_cache(maxsize=256)
def _parse_memo(value: bytes) -> MediaType:
    return _parse(value)


def _parse(value: bytes) -> MediaType:
    if not value.strip(b" \t"):
        raise BadMediaType("empty Content-Type")
    match = _MEDIA_TYPE.fullmatch(value)
    if match is None:
        shown = ascii(value[:100].decode("latin-1"))  # non-ASCII as escapes, for the header
        if b"," in value:
            raise BadMediaType(f"Content-Type is a list: {shown}")
        raise BadMediaType(f"malformed Content-Type: {shown}")
    kind, subtype, rest = match.groups()[:3]
    parameters: list[tuple[str, bytes]] = []
    for name_bytes, raw in _PARAMETERS.findall(rest):
        name = name_bytes.decode("ascii").lower()
        if any(name == seen for seen, _ in parameters):
            raise BadMediaType(f"Content-Type parameter {name!r} given twice")
        if raw.startswith(b'"'):
            raw = _QUOTED_PAIR.sub(rb"\1", raw[1:-1])
        parameters.append((name, raw))
    return MediaType(
        kind.decode("ascii").lower(), subtype.decode("ascii").lower(), tuple(parameters)
    )
