"""The event line format shared by the writers (files edge, simple index) and linehaul.

    download|{ts}|{country}|{url}|{tls_protocol}|{tls_cipher}|{project}|{version}|{type}|{ua}
    simple|{ts}|{country}|{url}|{tls_protocol}|{tls_cipher}||||{ua}

Absent values are written ``(null)`` (country is written empty). The user agent is the last
field and may itself contain ``|``; every other field has ``|`` percent-encoded so the field
count never changes. CR, LF and other control characters are percent-encoded in every field
so one event is always exactly one line.

The files edge also says how it answered, in a line of its own right before the download
line (:func:`served_line`, :func:`served_download_lines`)::

    served|{status}|{bytes_sent}|{range_requested}|{range_start}|||||

``status`` 200 or 206; ``bytes_sent`` the body bytes that went out; ``range_requested`` 1 when
the request had a ``Range`` header (0 otherwise: a Range may be answered with the whole file);
``range_start`` the offset of the first byte sent (0 for a 200). The five empty fields are
reserved: a reader takes the first four and ignores them, so facts added there later reach
older readers as nothing rather than as an error. The ``download`` line keeps the reference's
layout byte for byte, so the reference parser (and any older linehaul) still counts every
download; it sets the ``served`` line aside as a line it cannot read. Ten fields, like the
other kinds, so linehaul's column-at-a-time converter splits it with the rest.
"""

from __future__ import annotations

import functools
import re
from email.utils import formatdate

NULL = "(null)"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_PIPE = re.compile(r"[\x00-\x1f\x7f|]")


def _pct(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def _tidy(value: str) -> str:
    """``value`` with control characters and ``|`` percent-encoded.

    ``isprintable`` (C speed) is False for every control character, so clean values, nearly
    all of them, skip the regex; it is also False for some harmless characters (e.g. U+00A0),
    which then just take the exact path.
    """
    if value.isprintable() and "|" not in value:
        return value
    return _CONTROL_OR_PIPE.sub(_pct, value)


def _field(value: str | None) -> str:
    return _tidy(value) if value else NULL


def _last_field(value: str | None) -> str:
    if not value:
        return NULL
    return value if value.isprintable() else _CONTROL.sub(_pct, value)


@functools.lru_cache(maxsize=4)
def _http_date_of_second(second: int) -> str:
    return formatdate(second, usegmt=True)


def http_date(epoch: float) -> str:
    """RFC 1123 GMT, e.g. ``Thu, 07 Jan 2021 20:54:54 GMT`` (formatted once per second)."""
    return _http_date_of_second(int(epoch))


def _line(
    kind: str,
    timestamp: float,
    country: str | None,
    url: str,
    tls_protocol: str | None,
    tls_cipher: str | None,
    file_fields: tuple[str, str, str],
    user_agent: str | None,
) -> str:
    project, version, package_type = file_fields
    return (
        f"{kind}|{http_date(timestamp)}|{_tidy(country or '')}|{_tidy(url)}|"
        f"{_field(tls_protocol)}|{_field(tls_cipher)}|{project}|{version}|{package_type}|"
        f"{_last_field(user_agent)}"
    )


def download_line(
    *,
    timestamp: float,
    country: str | None,
    url: str,
    tls_protocol: str | None,
    tls_cipher: str | None,
    project: str | None,
    version: str | None,
    package_type: str | None,
    user_agent: str | None,
) -> str:
    """One download event, without the trailing newline."""
    file_fields = (_field(project), _field(version), _field(package_type))
    return _line(
        "download", timestamp, country, url, tls_protocol, tls_cipher, file_fields, user_agent
    )


def served_line(status: int, bytes_sent: int, range_requested: bool, range_start: int) -> str:
    """The facts of one response, without the newline."""
    return f"served|{status}|{bytes_sent}|{1 if range_requested else 0}|{range_start}|||||"


def served_download_lines(
    served: str,
    *,
    timestamp: float,
    country: str | None,
    url: str,
    tls_protocol: str | None,
    tls_cipher: str | None,
    project: str | None,
    version: str | None,
    package_type: str | None,
    user_agent: str | None,
) -> str:
    """A :func:`served_line` and its download line, as one string (two lines, without the
    trailing newline), so an event log keeps the two adjacent. One f-string, as it runs for
    every download the files edge serves."""
    return (
        f"{served}\ndownload|{http_date(timestamp)}|{_tidy(country or '')}|{_tidy(url)}|"
        f"{_field(tls_protocol)}|{_field(tls_cipher)}|{_field(project)}|{_field(version)}|"
        f"{_field(package_type)}|{_last_field(user_agent)}"
    )


def simple_line(
    *,
    timestamp: float,
    country: str | None,
    url: str,
    tls_protocol: str | None,
    tls_cipher: str | None,
    user_agent: str | None,
) -> str:
    """One simple-index request event (its file fields are empty), without the newline."""
    return _line(
        "simple", timestamp, country, url, tls_protocol, tls_cipher, ("", "", ""), user_agent
    )
