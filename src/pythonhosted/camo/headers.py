"""Which headers cross the proxy in each direction (spec rules 11-12), and the ones camo adds.

Both directions are allow-lists: anything not named here (cookies, Authorization, Set-Cookie,
hop-by-hop headers, upstream's own security headers) never crosses. Transfer-Encoding is not
relayed even though go-camo lists it: the ASGI server frames the body itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from pythonhosted.camo.policy import AddressPolicy
from pythonhosted.web.types import Headers

#: Client headers passed upstream. Accept is not among them: go-camo always sends its own
#: list of the types it accepts, whatever the client asked for.
REQUEST_HEADERS = frozenset(
    {
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


def accept_header(media_types: frozenset[str]) -> str:
    """What go-camo sends as Accept: ``image/*, image/svg+xml`` plus video/audio if enabled."""
    accepted = ["image/*", "image/svg+xml"]
    accepted += [f"{kind}/*" for kind in ("video", "audio") if kind in media_types]
    return ", ".join(accepted)


def upstream_request_headers(
    client: Iterable[tuple[bytes, bytes]],
    *,
    accept: str,
    user_agent: str,
    via: str,
    forwarded_for: str | None = None,
) -> dict[str, str]:
    """The client's allowed headers, plus camo's own Accept, User-Agent and Via, and the
    X-Forwarded-For given (``--enable-xfwd4``), as go-camo sends them."""
    headers: dict[str, str] = {}
    for name, value in client:
        if name.lower() in REQUEST_HEADERS:
            headers[name.decode("latin-1").title()] = value.decode("latin-1")
    headers["Accept"] = accept
    headers["User-Agent"] = user_agent
    headers["Via"] = via
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    return headers


def forwarded_for(
    client: Iterable[tuple[bytes, bytes]], peer: str | None, policy: AddressPolicy
) -> str | None:
    """go-camo's X-Forwarded-For: the client's own header if it sent one, else the peer
    address unless it is a private or special one (never reveal the internal network)."""
    values = [value for name, value in client if name.lower() == b"x-forwarded-for"]
    if values:
        return b", ".join(values).decode("latin-1")
    if peer is None:
        return None
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return None
    return peer if policy.refusal(address) is None else None


def names_this_server(client: Iterable[tuple[bytes, bytes]], server_name: str) -> bool:
    """Whether a Via header already names this server: the request went round in a loop.

    Each Via entry is ``[protocol/]version received-by [comment]``, or go-camo's bare name.
    """
    for name, value in client:
        if name.lower() != b"via":
            continue
        for entry in value.decode("latin-1").split(","):
            entry = entry.strip()
            parts = entry.split()
            if entry == server_name or (len(parts) >= 2 and parts[1] == server_name):
                return True
    return False


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


def security_headers(
    server: str, extra: Mapping[str, str], *, close_connections: bool = False
) -> Headers:
    """Added to every camo response, refusals included (spec rule 12); with
    ``close_connections`` (go-camo's ``--no-fk``) every response ends its connection."""
    headers: Headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-xss-protection", b"1; mode=block"),
        (b"content-security-policy", CSP),
        (b"access-control-allow-origin", b"*"),
        (b"server", server.encode("latin-1")),
    ]
    headers.extend(
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()
    )
    if close_connections:
        headers.append((b"connection", b"close"))
    return headers
