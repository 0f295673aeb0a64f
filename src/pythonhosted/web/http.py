"""HTTP semantics the services share: byte ranges (RFC 9110 §14), validators, dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime


class Unsatisfiable(ValueError):
    """A syntactically valid Range that selects nothing: answer 416."""


# Positions past any object's size (an int64's 19 digits): longer digit strings stand for this,
# rather than reaching int(), which refuses strings of over 4,300 digits with a ValueError.
_BEYOND = 10**19


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 19 else _BEYOND


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit alone takes "²" and "١"


def delta_seconds(text: str) -> int | None:
    """A Cache-Control or Age delta-seconds value (RFC 9111 §1.2.2), None when malformed.

    Past 2**31 it is 2**31, as the RFC asks: an upstream's thousand-digit ``max-age`` (or a
    Latin-1 "²", which ``str.isdigit`` accepts) must not raise on its way through int().
    """
    text = text.strip()
    if not _digits(text):
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= 10 and int(digits) < 2**31 else 2**31


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte span ``[start, end)`` a ``Range`` header asks for, or None for the whole.

    Malformed headers are ignored (the whole object is sent), as RFC 9110 allows; so are
    multi-range requests, which the files-edge spec lets us answer with the whole object.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not first:
        if not _digits(last):
            return None
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(0, size - suffix), size
    if not _digits(first) or (last and not _digits(last)):
        return None
    start = _position(first)
    end = _position(last) + 1 if last else size
    if last and end <= start:
        return None
    if start >= size:
        raise Unsatisfiable(header)
    return start, min(end, size)


def parse_http_date(text: str) -> datetime | None:
    """A client's HTTP date (RFC 9110 §5.6.7, and the obsolete forms ``email.utils`` reads) in
    UTC, or None when it is not one.

    Every date a request carries goes through here: ``parsedate_to_datetime`` raises
    OverflowError, not ValueError, for a year, a second or a zone offset too large for C
    (``Mon, 01 Jan 99999999999 00:00:00 GMT``), and that escaped as a 500 and a traceback in
    the log for each such request.
    """
    try:
        date = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return date if date.tzinfo is not None else date.replace(tzinfo=UTC)


def if_range_holds(if_range: str | None, etag: str | None, last_modified: datetime) -> bool:
    """Whether a Range may be honoured under ``If-Range`` (RFC 9110 §13.1.5).

    An entity tag must match the current one by strong comparison (weak tags never do); a date
    must equal the last modification exactly. Anything else, the client gets the whole
    object, so a resumed download never splices bytes of two different versions.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return etag is not None and not value.startswith("W/") and value == etag
    date = parse_http_date(value)
    return date is not None and last_modified.replace(microsecond=0) == date


def etag_matches(if_none_match: str, etag: str | None) -> bool:
    """Weak comparison (RFC 9110 §13.1.2), as If-None-Match requires."""
    if etag is None:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


def not_modified(
    if_none_match: str | None,
    if_modified_since: str | None,
    etag: str | None,
    last_modified: datetime,
) -> bool:
    """Whether a GET/HEAD with these validators gets 304 (If-None-Match wins when present)."""
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    if if_modified_since is None:
        return False
    since = parse_http_date(if_modified_since)
    return since is not None and last_modified.replace(microsecond=0) <= since


# RFC 9110 §12.4.2: a weight is 0 to 1 with at most three decimals.
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


def qvalue(text: str) -> float:
    """The weight ``q=`` gives, 0 (not acceptable) unless it is one RFC 9110 allows.

    ``float`` alone took ``nan``, ``inf`` and ``1e9``: ``q=nan`` compares false with every
    other weight, so a media range a client gave it won over the ones it preferred.
    """
    text = text.strip()
    return float(text) if _QVALUE.fullmatch(text) else 0.0


def preferred_encoding(accept: str | None, offered: tuple[str, ...]) -> str | None:
    """The first of ``offered`` content codings (in the server's order of preference) that an
    ``Accept-Encoding`` header takes with a non-zero quality (``*`` standing for any not
    named); None for the identity coding."""
    if not accept:
        return None
    qualities = {}
    for item in accept.split(","):
        name, _, params = item.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            quality = qvalue(params[2:])
        qualities[name.strip().lower()] = quality
    for name in offered:
        if qualities.get(name, qualities.get("*", 0.0)) > 0:
            return name
    return None


def http_datetime(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)
