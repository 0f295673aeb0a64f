"""One log line -> one row of ``file_downloads`` or ``simple_requests`` (or nothing).

    download|{ts}|{country}|{url}|{tls_protocol}|{tls_cipher}|{project}|{version}|{type}|{ua}
    simple|{ts}|{country}|{url}|{tls_protocol}|{tls_cipher}||||{ua}

Our files edge writes a third kind right before each download line, the facts of its
response (:mod:`pythonhosted.logline`)::

    served|{status}|{bytes_sent}|{range_requested}|{range_start}|||||

It is not an event: :func:`parse_served` reads it into the ``response`` record that
:func:`parse` puts into the row of the download line that follows. Every reader of lines
pairs them by the same rules (:class:`.batch.LineParser` line by line, the converters of
:mod:`.columns` in blocks): a ``served`` line goes with the next line that is not blank; a
download row takes its facts and an ignored agent's event takes it along; before anything
else (a simple request's row, an unprocessable line, another served line), at the end of
the object, or when it cannot be read, it is kept verbatim with the unprocessable lines.
Rows of reference lines have no ``response`` (null in the warehouse).

Built for throughput: one ``str.split`` per line, no per-field regex on the common path,
timestamps and user agents cached per distinct string (bounded; the details record is
shared, not copied), rows assembled as dict literals. Only a line whose fields hold something
unusual (a control or non-printable character, a space next to a ``|``) takes a slower path
that applies the reference's whitespace rules (see :func:`_tidy`).

Fields are not percent-decoded: the writer (:mod:`pythonhosted.logline`) encodes ``|`` and
control characters but not ``%`` itself, so decoding could not tell an encoded ``|`` from a
``%7C`` the client sent, and the reference keeps the text as logged. In a url ``%7C`` and ``|``
mean the same thing anyway; the other fields never legitimately hold either.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pythonhosted.linehaul.memo import Memo
from pythonhosted.linehaul.useragents import IGNORED, KNOWN

Row = dict[str, Any]

NULL = "(null)"
PACKAGE_TYPES = frozenset(
    (
        "sdist",
        "bdist_wheel",
        "bdist_dmg",
        "bdist_dumb",
        "bdist_egg",
        "bdist_msi",
        "bdist_rpm",
        "bdist_wininst",
    )
)

_ABSENT = ("", NULL)
_BLANKS = " \r\n"  # what the reference skips around "|" (tabs are expanded first)
_KEYWORDS = (0, 8)  # kind, package type
_NULLABLE = (4, 5, 6, 7)  # tls fields, project, version: "(null)" is a keyword there
_LINE_BREAK = re.compile(r"[\r\n]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# UTF-8 byte -> 0 for a space, a C0 control or DEL (never part of a multi-byte sequence),
# else 1: one C-speed pass finds whether any field needs _tidy.
SPACE_OR_CONTROL = bytes(0 if byte <= 0x20 or byte == 0x7F else 1 for byte in range(256))


class UnprocessableLine(ValueError):
    """The line cannot become a row; it belongs, verbatim, in the unprocessed output."""


SERVED = "served"
SERVED_PREFIX = b"served|"
MAX_COUNT_DIGITS = 18  # byte counts and offsets: below 10**18, inside BigQuery's INT64


def _count(text: str) -> int:
    """A byte count or offset as the writer writes it: decimal digits, no sign, no leading
    zero."""
    if (
        not text.isascii()
        or not text.isdigit()
        or len(text) > MAX_COUNT_DIGITS
        or (text[0] == "0" and len(text) > 1)
    ):
        raise UnprocessableLine("a served line's count is not a plain number")
    return int(text)


def response_record(facts: str) -> Row:
    """``status|bytes_sent|range_requested|range_start`` -> the row's ``response`` record."""
    parts = facts.split("|")
    if len(parts) != 4:
        raise UnprocessableLine("a served line needs its four facts")
    status, sent, ranged, start = parts
    code = _count(status)
    if not 100 <= code <= 599 or ranged not in ("0", "1"):
        raise UnprocessableLine("a served line's status or range flag is out of range")
    return {
        "status": code,
        "bytes_sent": _count(sent),
        "range_requested": ranged == "1",
        "range_start": _count(start),
    }


def parse_served(line: str) -> Row:
    """The ``response`` record of a ``served`` line (exactly ten fields, the kind exact, the
    reserved last five ignored); UnprocessableLine for anything else."""
    parts = line.rstrip("\n").split("|")
    if len(parts) != 10 or parts[0] != SERVED:
        raise UnprocessableLine("not a served line of ten fields")
    return response_record("|".join(parts[1:5]))


def parse(line: str, response: Row | None = None) -> Row | None:
    """The row for one log line; None when its user agent is on the ignore list.

    A trailing newline is allowed (a line break elsewhere only between a field and its ``|``,
    as the reference reads it). Raises :class:`UnprocessableLine` for anything else that
    is not a valid ``download`` or ``simple`` line. The row's ``details`` is a shared,
    read-only :class:`~pythonhosted.linehaul.details.Record`; the rest of the row is fresh.
    ``response``: the record of the ``served`` line before a download line, which its row
    carries (between ``project`` and ``file``); a simple request's row never does.
    """
    if "\t" in line:  # the reference's grammar sees tabs expanded to 8-column stops
        line = line.expandtabs()
    parts = line.split("|", 9)
    if len(parts) != 10:
        raise UnprocessableLine("wrong number of fields")
    kind, ts, country, url, tls_protocol, tls_cipher, project, version, package_type, ua = parts
    if "\n" in ua:
        ua, _, rest = ua.partition("\n")
        if rest.strip(_BLANKS):
            raise UnprocessableLine("more than one line")
    # Fast check that the reference's whitespace rules change nothing: the kind is exact and
    # the fields after the timestamp hold no space or control byte (the timestamp may hold
    # anything: _timestamp tidies it).
    try:
        untidy = 0 in line[len(kind) + len(ts) + 2 : len(line) - len(parts[9])].encode().translate(
            SPACE_OR_CONTROL
        )
    except UnicodeEncodeError:  # a lone surrogate, from undecodable bytes
        untidy = True
    if untidy or (kind != "download" and kind != "simple"):
        kind, ts, country, url, tls_protocol, tls_cipher, project, version, package_type = map(
            _tidy, range(9), parts
        )
    if kind == "download":
        if project in _ABSENT or version in _ABSENT or not url:
            raise UnprocessableLine("no project, version or url")
        if package_type not in PACKAGE_TYPES:
            raise UnprocessableLine("bad package type")
        timestamp = TIMESTAMPS[ts]
        known = KNOWN[ua]
        if known is IGNORED:
            return None
        row: dict[str, Any] = {"timestamp": timestamp, "url": url, "project": project}
        if response is not None:  # (in this place: the C converter writes the same order)
            row["response"] = response
        row["file"] = {
            "filename": url.rpartition("/")[2],
            "project": project,
            "version": version,
            "type": package_type,
        }
        row["tls_protocol"] = None if tls_protocol in _ABSENT else tls_protocol
        row["tls_cipher"] = None if tls_cipher in _ABSENT else tls_cipher
        row["country_code"] = country or None
        row["details"] = known
        return row
    if kind == "simple":
        if project or version or package_type:
            raise UnprocessableLine("simple line with project fields")
        segments = url.split("/", 3)
        if len(segments) < 3:
            raise UnprocessableLine("no project in a simple url")
        timestamp = TIMESTAMPS[ts]
        known = KNOWN[ua]
        if known is IGNORED:
            return None
        return {
            "timestamp": timestamp,
            "url": url,
            "project": segments[2],
            "tls_protocol": None if tls_protocol in _ABSENT else tls_protocol,
            "tls_cipher": None if tls_cipher in _ABSENT else tls_cipher,
            "country_code": country or None,
            "details": known,
        }
    raise UnprocessableLine("unknown kind of line")


def _timestamp(text: str) -> str:
    """RFC 1123 -> ``YYYY-MM-DD HH:MM:SS +00:00``, read as the reference does.

    After leading blanks, the reference ignores the first five and the last four characters
    (weekday and zone), so ``Fri, 07 Jan 2021 ...`` on a Thursday is accepted; the zone is
    always UTC.
    """
    text = _tidy(1, text)
    try:
        when = datetime.strptime(text[5:-4], "%d %b %Y %H:%M:%S")
    except ValueError:
        raise UnprocessableLine("bad timestamp") from None
    return f"{when.isoformat(' ')} +00:00"


TIMESTAMPS: Memo[str, str] = Memo(_timestamp, 4096, 2 << 20)
"""``TIMESTAMPS[text]``: :func:`_timestamp`, cached per distinct second (bounded in entries
and bytes)."""


def _tidy(index: int, field: str) -> str:
    """Field ``index`` as the reference's grammar reads it.

    Blanks before a field are skipped; a CR or LF may end a field if only blanks follow; a
    trailing space is part of a field unless the value is a keyword (the kind, the
    package type, ``(null)`` where it means null); any other control character makes the line
    unprocessable.
    """
    value = field.lstrip(_BLANKS)
    end = _LINE_BREAK.search(value)
    if end is not None:
        value, rest = value[: end.start()], value[end.start() :]
        if rest.strip(_BLANKS):
            raise UnprocessableLine("control character in a field")
    if _CONTROL.search(value):
        raise UnprocessableLine("control character in a field")
    keyword = value.rstrip(" ")
    keep_blank = index not in _KEYWORDS and (keyword != NULL or index not in _NULLABLE)
    return value if keep_blank else keyword
