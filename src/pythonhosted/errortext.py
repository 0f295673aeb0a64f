"""An exception as one line of a log or an error message.

Library errors (obstore's, chDB's) run to dozens of lines of debug text; what an operator
reads is their first line, or the exception's type when it says nothing; and never a
password a URL in it carries.
"""

from __future__ import annotations

import re

# A URL's user information: greedy up to the authority's last "@", as URL parsers read it.
# The scheme's length is bounded: unbounded, a long run of letters without "://" (a 100 kB
# --config value) made every start position scan to the end, minutes of CPU for one line.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31}://)[^/?#\s'\"]*@")


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s text (a URL in it without its credentials), or its type's
    name when the text is empty."""
    return without_credentials((str(exc).strip().splitlines() or [type(exc).__name__])[0])


def without_credentials(text: str) -> str:
    """``text`` with the user information of every URL in it shown as ``***``: a password in
    a URL is a secret, and error lines go to terminals, CI logs and log shippers."""
    return _USERINFO.sub(r"\1***@", text)
