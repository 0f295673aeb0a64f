"""Facts about the client for event lines: country and TLS, directly or via a trusted proxy.

Behind a TLS terminator or CDN the socket peer is the proxy, so the client's address, TLS
version and cipher come from headers the proxy sets; they are believed only when the operator
says the proxy is there (``trust_proxy_headers``), since any client can send them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pythonhosted.geo import country_for
from pythonhosted.web.types import Scope


@dataclass(frozen=True, slots=True)
class ClientFacts:
    trust_proxy_headers: bool = False
    country_header: str | None = None  # e.g. CF-IPCountry, set by the CDN

    def country(self, scope: Scope, headers: dict[bytes, bytes]) -> str | None:
        if self.country_header is not None:
            value = headers.get(self.country_header.lower().encode())
            return value.decode("latin-1").strip().upper()[:2] or None if value else None
        address = None
        if self.trust_proxy_headers:
            forwarded = headers.get(b"x-forwarded-for")
            if forwarded:
                address = forwarded.decode("latin-1").split(",", 1)[0].strip()
        if address is None:
            client = scope.get("client")
            address = client[0] if client else None
        return country_for(address)

    def tls(self, headers: dict[bytes, bytes]) -> tuple[str | None, str | None]:
        """(protocol, cipher) as the proxy reports them; unknown without a trusted proxy."""
        if not self.trust_proxy_headers:
            return None, None
        protocol = headers.get(b"x-tls-protocol")
        cipher = headers.get(b"x-tls-cipher")
        return (
            protocol.decode("latin-1") if protocol else None,
            cipher.decode("latin-1") if cipher else None,
        )

    def is_tls(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        if scope.get("scheme") == "https":
            return True
        return self.trust_proxy_headers and headers.get(b"x-forwarded-proto") == b"https"
