"""Whether a shared cache may keep an upstream response, and for how long (RFC 9111, rule 22).

Only what upstream says counts, never the client's request directives: a reload in one browser
must not be a way to make camo hammer an image host. Decisions, in RFC 9111's order:

- ``no-store`` or ``private``: not kept (camo is a shared cache);
- a ``Vary`` on anything but ``Accept``/``Accept-Encoding`` (which camo sends the same every
  time) or ``*``: not kept, the response depends on the client;
- a request with credentials (``user:pass@``): kept only if upstream says ``public`` or
  ``s-maxage``;
- lifetime: ``s-maxage``, else ``max-age``, else ``Expires`` minus ``Date``, else the default
  TTL; ``no-cache`` makes it 0 (kept, revalidated on every use); never over the maximum TTL; an
  ``Age`` from upstream counts against it;
- ``must-revalidate``, ``proxy-revalidate``, ``s-maxage`` and ``no-cache`` forbid serving the
  entry stale when upstream fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pythonhosted.web.http import delta_seconds, parse_http_date

#: ``name`` or ``name=token`` or ``name="quoted"``, comma-separated
_DIRECTIVE = re.compile(
    r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*))?\s*'
)
_CACHEABLE_VARY = frozenset({"accept", "accept-encoding"})


@dataclass(frozen=True)
class Freshness:
    storable: bool
    lifetime: float = 0.0  # seconds fresh from when upstream generated it
    age: float = 0.0  # seconds old when received (upstream's Age)
    stale_allowed: bool = True  # may be served stale when upstream fails
    reason: str = ""  # why not storable


def directives(values: list[bytes]) -> dict[str, str]:
    """Cache-Control directives (names lower-case) from every header line; a malformed part
    ends the parse (what was read so far counts)."""
    found: dict[str, str] = {}
    text = ",".join(value.decode("latin-1") for value in values)
    for part in text.split(","):
        if not part.strip():
            continue
        match = _DIRECTIVE.fullmatch(part)
        if match is None:
            break
        name, value = match.group(1).lower(), match.group(2) or ""
        found.setdefault(name, value.strip('"'))
    return found


def _seconds(text: str | None) -> float | None:
    """A delta-seconds value; None if absent, 0 if malformed (RFC 9111: treat as stale)."""
    if text is None:
        return None
    seconds = delta_seconds(text)
    return float(seconds) if seconds is not None else 0.0


def _http_date(value: bytes | None) -> float | None:
    if value is None:
        return None
    moment = parse_http_date(value.decode("latin-1"))
    return None if moment is None else moment.timestamp()


def freshness(
    headers: list[tuple[bytes, bytes]],
    *,
    default_ttl: float,
    max_ttl: float,
    credentials: bool = False,
) -> Freshness:
    """How a 200 with these (raw upstream) headers may be cached."""
    named: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        named.setdefault(name.lower(), []).append(value)
    control = directives(named.get(b"cache-control", []))
    if "no-store" in control:
        return Freshness(False, reason="no-store")
    if "private" in control:
        return Freshness(False, reason="private")
    vary = {
        token.strip().lower()
        for value in named.get(b"vary", [])
        for token in value.decode("latin-1").split(",")
        if token.strip()
    }
    if vary - _CACHEABLE_VARY:
        return Freshness(False, reason="vary")
    shared = _seconds(control.get("s-maxage"))
    if credentials and "public" not in control and shared is None:
        return Freshness(False, reason="credentials")
    lifetime = shared if shared is not None else _seconds(control.get("max-age"))
    if lifetime is None and b"expires" in named:
        expires = _http_date(named[b"expires"][0])
        date = _http_date(named.get(b"date", [None])[0])
        # an invalid Expires (or no Date to measure it from) means already expired
        lifetime = 0.0 if expires is None or date is None else max(0.0, expires - date)
    if lifetime is None:
        lifetime = default_ttl
    if "no-cache" in control:
        lifetime = 0.0
    age = _seconds(named.get(b"age", [b""])[0].decode("latin-1").strip() or None) or 0.0
    strict = {"must-revalidate", "proxy-revalidate", "no-cache"} & control.keys()
    return Freshness(
        True,
        lifetime=min(lifetime, max_ttl),
        age=age,
        stale_allowed=not strict and shared is None,
    )
