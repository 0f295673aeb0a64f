"""Which destination addresses camo may connect to (spec rule 6).

The check runs on addresses, never on host names: the resolver hands the connector only the
addresses this policy accepts, so the connection goes to exactly what was checked. IPv6 forms
that embed an IPv4 address (mapped, translated, compatible, NAT64, 6to4, Teredo) are judged by
the embedded IPv4 address, so ``::ffff:10.0.0.1`` is refused like ``10.0.0.1``.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DENIED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. broadcast 255.255.255.255
    )
)
DENIED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routable on old stacks)
        "ff00::/8",  # multicast
    )
)
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the embedding forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _TRANSLATED or any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address))
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Deny the special-purpose ranges unless an operator (or a test) allows a range."""

    allowed: tuple[Network, ...] = ()

    @classmethod
    def allowing(cls, networks: Iterable[Network | str]) -> AddressPolicy:
        return cls(tuple(ipaddress.ip_network(net) for net in networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused, or None when camo may connect to it."""
        return _refusal(self, address)


@functools.lru_cache(maxsize=4096)  # hot path: every request's host, every resolved address
def _refusal(policy: AddressPolicy, address: IPAddress) -> str | None:
    if any(address in net for net in policy.allowed if net.version == address.version):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return f"address {address} has a zone"
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = _refusal(policy, inner)
            return None if reason is None else f"address {address} embeds {inner}"
        denied: tuple[Network, ...] = DENIED_V6
    else:
        denied = DENIED_V4
    for net in denied:
        if address in net:
            return f"address {address} is in refused range {net}"
    return None


@functools.lru_cache(maxsize=4096)  # hot path: parsed for every request and redirect hop
def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells literally, including legacy IPv4 forms; None for a name.

    Browsers and ``inet_aton`` read ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` and ``127.1``
    as 127.0.0.1, so camo must too, or such hosts would reach the resolver as names. As in the
    WHATWG URL standard, a host whose last label is a number must be a valid IPv4 address
    (ValueError otherwise).
    """
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    labels = bare.lower().removesuffix(".").split(".")
    if not _is_number(labels[-1]):
        return None
    if not all(_is_number(label) for label in labels):
        raise ValueError(f"host {host!r} is not a valid IPv4 address")
    try:
        return ipaddress.IPv4Address(socket.inet_aton(".".join(labels)))
    except OSError:
        raise ValueError(f"host {host!r} is not a valid IPv4 address") from None


def _is_number(label: str) -> bool:
    if label.startswith("0x"):
        return all(c in "0123456789abcdef" for c in label[2:])
    return label.isdigit()
