"""Which headers cross the proxy in each direction (spec rules 11-12), and the ones camo adds.

Both directions are allow-lists: anything not named here (cookies, Authorization, Set-Cookie,
hop-by-hop headers, upstream's own security headers) never crosses. Transfer-Encoding is not
relayed even though go-camo lists it: the ASGI server frames the body itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pythonhosted.web.types import Headers

REQUEST_HEADERS = frozenset(
    {
        b"accept",
        b"accept-charset",
        b"accept-language",
        b"cache-control",
        b"if-none-match",
        b"if-modified-since",
        b"range",
    }
)
RESPONSE_HEADERS = (
    "Accept-Ranges",
    "Content-Length",
    "Content-Range",
    "Cache-Control",
    "Content-Encoding",
    "Content-Type",
    "ETag",
    "Expires",
    "Last-Modified",
)
CSP = b"default-src 'none'; img-src data:; style-src 'unsafe-inline'"
DEFAULT_ACCEPT = "image/*"


def upstream_request_headers(
    client: Iterable[tuple[bytes, bytes]], *, user_agent: str, via: str
) -> dict[str, str]:
    """The client's allowed headers, plus camo's own User-Agent and Via."""
    headers: dict[str, str] = {}
    for name, value in client:
        if name.lower() in REQUEST_HEADERS:
            headers[name.decode("latin-1").title()] = value.decode("latin-1")
    headers.setdefault("Accept", DEFAULT_ACCEPT)
    headers["User-Agent"] = user_agent
    headers["Via"] = via
    return headers


def relayed_response_headers(
    upstream: Iterable[tuple[bytes, bytes]], names: frozenset[bytes]
) -> Headers:
    """The first upstream header of each name in ``names`` (lower-case, a subset of
    RESPONSE_HEADERS), from upstream's raw header bytes: no decoding and re-encoding per
    request, and one pass over what upstream sent instead of one lookup per allowed name."""
    out: Headers = []
    seen: set[bytes] = set()
    for raw_name, value in upstream:
        name = raw_name.lower()
        if name in names and name not in seen:
            seen.add(name)
            out.append((name, value))
    return out


def security_headers(server_name: str, extra: Mapping[str, str]) -> Headers:
    """Added to every camo response, refusals included (spec rule 12)."""
    headers: Headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-xss-protection", b"1; mode=block"),
        (b"content-security-policy", CSP),
        (b"access-control-allow-origin", b"*"),
        (b"server", server_name.encode("latin-1")),
    ]
    headers.extend(
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()
    )
    return headers
