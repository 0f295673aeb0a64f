"""Client country for the download log: an offline IP database, or a trusted edge header.

iptocc ships the RIR delegation data inside its wheel (no download at run time) and answers in
about 0.1 µs, so the lookup can sit on the request path.
"""

from __future__ import annotations

import iptocc


def country_for(address: str | None) -> str | None:
    """ISO 3166 alpha-2 code for an IPv4/IPv6 address; None for private or unknown ones."""
    if not address:
        return None
    try:
        code = iptocc.country_code(address)
    except ValueError:
        return None
    return code or None
