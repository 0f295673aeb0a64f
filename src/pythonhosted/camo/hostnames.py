"""Which URL hosts can be DNS names at all, judged before any lookup.

A name the resolver would choke on (an empty or over-long label, a space, a percent sign) is a
bad URL, refused with a reason like any other, not an exception from deep inside the resolver:
``socket.getaddrinfo`` raises ``UnicodeError`` for ``127.0.0.1..`` while IDNA-encoding it. The
rule is Go's ``isDomainName`` (what go-camo's resolver applies): labels of 1-63 letters, digits,
``-`` or ``_``, not starting or ending with ``-``, at most 253 characters, one trailing dot
allowed. yarl has already turned non-ASCII names into their ``xn--`` form.
"""

from __future__ import annotations

import re

MAX_NAME = 253
#: names that mean this machine whatever DNS says (go-camo refuses them by name too)
LOCAL_DOMAINS = ("localhost", "localdomain")
_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?")


def name_refusal(host: str) -> str | None:
    """Why ``host`` (a URL's raw host that is not an IP literal) is no DNS name, or None."""
    if len(host.removesuffix(".")) > MAX_NAME:
        return f"host name longer than {MAX_NAME} characters"
    if _NAME.fullmatch(host) is None:
        return f"host {host[:80]!r} is not a valid DNS name"
    return None


def local_name_refusal(host: str) -> str | None:
    """Why ``host`` (a valid DNS name) names this machine, or None."""
    name = host.removesuffix(".").lower()
    for local in LOCAL_DOMAINS:
        if name == local or name.endswith("." + local):
            return f"host {host!r} is local"
    return None
