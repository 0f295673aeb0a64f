"""A block of log lines -> NDJSON rows, a column at a time instead of a line at a time.

Ingest's cost is per line, and a Python step per line (split, dicts, ``orjson.dumps``) costs
several times the gunzip before it. So the common line -- a ``download`` or ``simple`` event
whose fields need neither the parser's whitespace rules nor JSON escaping -- gets none:

- one ``split(b"|")`` of the whole block gives every field, in order; as each line has ten
  fields, every ninth item from the first is a column (timestamps, countries, ...), and every
  ninth from the ninth is a user agent joined, across the newline, to the next line's kind;
- each field of few distinct values (timestamp, country, TLS fields, project, version,
  package type, agent) is mapped through a memo to a ready-made JSON fragment: the agent's
  ``details`` serialised once, each second's timestamp text once;
- the url (and its filename) is copied verbatim after one check of the joined column;
- each row's text is the fragments interleaved, and the block's rows are one ``join``.

The memos also check the structure: every agent item must hold exactly one newline and every
other item none (so each line has exactly ten fields). Fragments come from the per-line
parser's own caches (:data:`.events.TIMESTAMPS`, :data:`.useragents.KNOWN`) and orjson, so a
row is byte for byte ``orjson.dumps(parse(line)) + b"\\n"`` (tests/linehaul/test_columns.py).
:func:`convert_block` is all or nothing: if any line is of another kind (unprocessable,
untidy, a tab, a byte JSON escapes, a ``|`` in the agent) it returns None; the Python
:class:`Tables` then halve the block until the odd line is alone, and hand that line to the
caller's fallback (the per-line parser). Blank lines (nothing but spaces, tabs and CRs) are
counted and dropped before that, in one regular-expression pass over a block that may hold
any, so a hostile object of nothing but newlines costs no halving.

``_columns.c`` does the same a line at a time in C (:func:`object_tables` picks it when it was
built): it splits lines, checks their structure and copies fragments, and asks these memos
for every fragment, so both converters give the same rows by construction and every decision
about a value stays here. Even column by column, Python's cost per line was several times the
gunzip's; in C it is about the gunzip's. It passes each line it cannot convert to the fallback
in its turn, and settles blank lines and lines the parser would surely reject itself.

Every memo is bounded in entries and bytes (:class:`~.cache.Memo`); the C converter's tables
in front of them too (``cache_sizes()``).

``served`` lines (our edge's response facts, :mod:`pythonhosted.logline`) split into the same
ten fields; their first four, joined, go through :data:`RESPONSE` to a fragment that takes
the place of the file glue in the row of the download line after them (``"response":{...}``
between ``project`` and ``file``, as :func:`.events.parse` places it). Both converters pair
them by :mod:`.events`' rules: a ``served`` line at the end of a block is carried to the next
block (and the next part) for the download line that starts it; one that precedes anything
but a download line, or ends the object (:meth:`Tables.flush`), goes to the unprocessed
table; the per-line parser behind a converter gets the carried line with the line it takes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import Any, Protocol, TypeVar

import orjson

from pythonhosted.linehaul.events import (
    NULL,
    PACKAGE_TYPES,
    SERVED_PREFIX,
    SPACE_OR_CONTROL,
    TIMESTAMPS,
    UnprocessableLine,
    parse_served,
    response_record,
)
from pythonhosted.linehaul.memo import Memo
from pythonhosted.linehaul.useragents import IGNORED, KNOWN

try:
    from pythonhosted.linehaul import _columns
except ImportError:  # installed without a C compiler: the Python converter does it all
    _columns = None  # type: ignore[assignment]

MEMO_SIZE = 8192
MEMO_BYTES = 4 << 20  # fields of few, short values (a hostile log makes them many and long)
AGENT_MEMO_BYTES = 16 << 20  # agents are ~500 bytes and their details fragments ~700
Fragment = bytes | None  # None: the value needs the per-line parser
_ABSENT = (b"", NULL.encode())
_KINDS = {b"download": 1, b"simple": 0, b"served": 2}
_SERVED = 2
# What a url must not hold to be copied verbatim: blanks and controls (the parser would tidy
# them, or the line is unprocessable) and the two characters JSON escapes that remain.
_NOT_VERBATIM = bytes(range(0x21)) + b'"\\\x7f'
_IGNORED = b""  # the details fragment of an ignored agent (real fragments are never empty)
_TIMESTAMP_LEAD = b'{"timestamp":"'
_TIMESTAMP_GLUE = b'","url":"'
_THIRD = itemgetter(2)


@dataclass
class Block:
    """A block's rows, NDJSON per table, and what became of its lines."""

    downloads: bytes
    simple: bytes
    rows: int
    ignored: int
    earliest: str | None  # the smallest row timestamp, as written in rows
    served: int = 0  # served lines that went with the download lines after them
    carried: tuple[bytes, bytes] | None = None  # a last served line and its fragment


def _text_memo(
    lead: bytes, glue: bytes, *, null: tuple[bytes, ...] = (), required: bool = False
) -> Memo[bytes, Fragment]:
    """A memo: a field -> ``lead`` + its JSON value (``null`` for values in ``null``) + ``glue``.

    No fragment for a field the parser would tidy (a blank or control byte) or, ``required``,
    for an absent one (empty or ``(null)``: a download without project or version).
    """

    def fragment(raw: bytes) -> Fragment:
        if 0 in raw.translate(SPACE_OR_CONTROL) or (required and raw in _ABSENT):
            return None
        return lead + (b"null" if raw in null else orjson.dumps(raw.decode())) + glue

    return Memo(fragment, MEMO_SIZE, MEMO_BYTES)


def _timestamp(raw: bytes) -> Fragment:
    if b"\n" in raw or b"\t" in raw:  # another line's field; tabs the parser expands first
        return None
    try:
        text = TIMESTAMPS[raw.decode()]
    except UnprocessableLine:
        return None
    return _TIMESTAMP_LEAD + text.encode() + _TIMESTAMP_GLUE


def _package_type(raw: bytes) -> Fragment:
    if raw.decode() not in PACKAGE_TYPES:  # exactly: a type with blanks needs tidying
        return None
    return b'"' + raw + b'"},"tls_protocol":'


def _agent_details(agent: bytes) -> Fragment:
    """An agent -> its details JSON + ``}\\n``; b"" if ignored."""
    if b"\t" in agent:  # the parser expands tabs
        return None
    known = KNOWN[agent.decode()]
    if known is IGNORED:
        return _IGNORED
    return orjson.dumps(known) + b"}\n"


def _response(facts: bytes) -> Fragment:
    """A served line's ``status|bytes|range|start`` -> ``,"response":{...}`` and the file glue
    of the download row after it; None if the facts cannot be read."""
    try:
        record = response_record(facts.decode())
    except (UnprocessableLine, UnicodeDecodeError):
        return None
    return b',"response":' + orjson.dumps(record) + _FILE


def _details(joined: bytes) -> Fragment:
    """``{agent}\\n{next kind}`` -> the agent's details fragment."""
    agent, newline, after = joined.partition(b"\n")
    if not newline or b"\n" in after:
        return None
    return _agent_details(agent)


def _next_kind(joined: bytes) -> int | None:
    """``{agent}\\n{next kind}`` -> 1 if the next line is a download, 0 if simple, 2 if
    served."""
    return _KINDS.get(joined.partition(b"\n")[2]) if joined.count(b"\n") == 1 else None


TIMESTAMP = Memo(_timestamp, MEMO_SIZE, MEMO_BYTES)
PROJECT = _text_memo(b'","project":', b"", required=True)  # download: after url and filename
VERSION = _text_memo(b',"version":', b',"type":', required=True)
PACKAGE_TYPE = Memo(_package_type, MEMO_SIZE, MEMO_BYTES)
SIMPLE_PROJECT = _text_memo(b'","project":', b',"tls_protocol":')  # simple: after the url
TLS_PROTOCOL = _text_memo(b"", b',"tls_cipher":', null=_ABSENT)
TLS_CIPHER = _text_memo(b"", b',"country_code":', null=_ABSENT)
COUNTRY = _text_memo(b"", b',"details":', null=(b"",))
DETAILS = Memo(_details, MEMO_SIZE, AGENT_MEMO_BYTES)
AGENT_DETAILS = Memo(_agent_details, MEMO_SIZE, AGENT_MEMO_BYTES)  # the C converter's
NEXT_KIND = Memo(_next_kind, MEMO_SIZE, AGENT_MEMO_BYTES)
RESPONSE = Memo(_response, MEMO_SIZE, MEMO_BYTES)
_FIELD_MEMOS = (  # the C converter's, in the order of its arguments
    TIMESTAMP,
    PROJECT,
    VERSION,
    PACKAGE_TYPE,
    SIMPLE_PROJECT,
    TLS_PROTOCOL,
    TLS_CIPHER,
    COUNTRY,
    AGENT_DETAILS,
    RESPONSE,
)
MEMOS: tuple[Memo[bytes, Any], ...] = (*_FIELD_MEMOS, DETAILS, NEXT_KIND)
"""Every memo of this module (benchmarks clear them for cold runs)."""

_FILE = b',"file":{"filename":"'
T = TypeVar("T")
Column = list[bytes]
Pieces = list[Any]  # fragments (bytes), or None where a value needs the per-line parser
Part = tuple[bytes, int, int, bytes]  # NDJSON, rows, ignored, earliest timestamp fragment
_NO_ROWS: Part = (b"", 0, 0, b"~")


def _look_up(memo: Memo[bytes, T], column: Column) -> list[T]:
    return list(map(memo.__getitem__, column))


def _verbatim(column: Column) -> bool:
    """Whether every value can be copied into a JSON string as it is."""
    joined = b"".join(column)
    return len(joined.translate(None, _NOT_VERBATIM)) == len(joined)


def _rows(details: Pieces, pieces: list[Pieces]) -> Part | None:
    """Each row's text is its pieces in order, ``details`` last; rows of ignored agents are
    left out, once their other pieces show they are not unprocessable. None if a piece is."""
    ignored: list[int] = []
    try:
        while True:
            ignored.append(details.index(_IGNORED, ignored[-1] + 1 if ignored else 0))
    except ValueError:
        pass
    for index in reversed(ignored):
        if any(column[index] is None for column in pieces):
            return None
        for column in (details, *pieces):
            del column[index]
    if not details:
        return b"", 0, len(ignored), b"~"
    pieces.append(details)
    width = len(pieces)
    joined: Pieces = [None] * (width * len(details))
    for index, column in enumerate(pieces):
        joined[index::width] = column
    try:
        text = b"".join(joined)  # a None raises TypeError
    except TypeError:
        return None
    return text, len(details), len(ignored), min(pieces[0])


def _downloads(columns: list[Column], glue: Column | None = None) -> Part | None:
    """Download lines' columns -> their rows; ``glue``: each row's piece before its
    filename (the file glue, or a served line's response fragment ending with it)."""
    ts, country, url, protocol, cipher, project, version, kind, agent = columns
    if not all(url) or not _verbatim(url):
        return None
    projects = _look_up(PROJECT, project)
    return _rows(
        _look_up(DETAILS, agent),
        [
            _look_up(TIMESTAMP, ts),
            url,
            projects,
            [_FILE] * len(url) if glue is None else glue,
            list(map(_THIRD, map(bytes.rpartition, url, repeat(b"/")))),
            list(projects),
            _look_up(VERSION, version),
            _look_up(PACKAGE_TYPE, kind),
            _look_up(TLS_PROTOCOL, protocol),
            _look_up(TLS_CIPHER, cipher),
            _look_up(COUNTRY, country),
        ],
    )


def _simple(columns: list[Column]) -> Part | None:
    """Simple-request lines' columns -> their rows."""
    ts, country, url, protocol, cipher, project, version, kind, agent = columns
    if any(project) or any(version) or any(kind) or not _verbatim(url):
        return None
    try:  # the project is the url's third "/"-segment, even when empty
        projects = list(map(_THIRD, map(bytes.split, url, repeat(b"/"), repeat(3))))
    except IndexError:
        return None
    return _rows(
        _look_up(DETAILS, agent),
        [
            _look_up(TIMESTAMP, ts),
            url,
            _look_up(SIMPLE_PROJECT, projects),
            _look_up(TLS_PROTOCOL, protocol),
            _look_up(TLS_CIPHER, cipher),
            _look_up(COUNTRY, country),
        ],
    )


def convert_block(block: bytes, carried: bytes | None = None) -> Block | None:
    """Whole lines, each ending with ``\\n``, valid UTF-8 -> their rows; None if any line
    needs the per-line parser. ``carried``: the response fragment of a served line that
    ended the block before (the first line must then be a download line)."""
    fields = block.split(b"|")
    if (len(fields) - 1) % 9 or not fields[-1].endswith(b"\n"):
        return None
    columns = [fields[index::9] for index in range(1, 10)]
    kinds: list[Any] = [_KINDS.get(fields[0]), *_look_up(NEXT_KIND, columns[8][:-1])]
    if carried is not None or _SERVED in kinds:
        return _with_served(block, columns, kinds, carried)
    return _convert_columns(columns, kinds)


def _with_served(
    block: bytes, columns: list[Column], kinds: list[Any], carried: bytes | None
) -> Block | None:
    """:func:`convert_block` for a block with served lines (or one carried over): each goes
    with the download line after it, or, the block's last line, to the next block."""
    if None in kinds:
        return None
    glue = [_FILE] * len(kinds)
    served = 0
    if carried is not None:
        if kinds[0] != 1:
            return None
        glue[0] = carried
        served = 1
    last: tuple[bytes, bytes] | None = None
    for index in [index for index, kind in enumerate(kinds) if kind == _SERVED]:
        fields = [column[index] for column in columns]
        if b"\n" in b"".join(fields[4:8]) or fields[8].count(b"\n") != 1:
            return None  # not ten fields: the reserved ones are not read, but counted
        fragment = RESPONSE[b"|".join(fields[:4])]
        if fragment is None:
            return None
        if index + 1 == len(kinds):
            line = block[block.rfind(b"\n", 0, len(block) - 1) + 1 : -1]
            last = (line, fragment)
        elif kinds[index + 1] != 1:
            return None
        else:
            glue[index + 1] = fragment
            served += 1
    events = [kind != _SERVED for kind in kinds]
    columns = [list(compress(column, events)) for column in columns]
    glue = list(compress(glue, events))
    kinds = list(compress(kinds, events))
    converted = _convert_columns(columns, kinds, glue) if kinds else _empty()
    if converted is None:
        return None
    converted.served, converted.carried = served, last
    return converted


def _convert_columns(
    columns: list[Column], kinds: list[Any], glue: Column | None = None
) -> Block | None:
    """Event lines' columns (kind 1 download, 0 simple) -> their rows."""
    try:
        downloads = sum(kinds)  # a None (not a kind) raises TypeError
    except TypeError:
        return None
    down: Part | None
    simple: Part | None
    if downloads == len(kinds):
        down, simple = _downloads(columns, glue), _NO_ROWS
    elif not downloads:
        down, simple = _NO_ROWS, _simple(columns)
    else:
        others = list(map(not_, kinds))
        down = _downloads(
            [list(compress(column, kinds)) for column in columns],
            None if glue is None else list(compress(glue, kinds)),
        )
        simple = _simple([list(compress(column, others)) for column in columns])
    if down is None or simple is None:
        return None
    earliest = min(down[3], simple[3])
    return Block(
        down[0],
        simple[0],
        down[1] + simple[1],
        down[2] + simple[2],
        None if earliest == b"~" else _timestamp_text(earliest),
    )


def _empty() -> Block:
    return Block(b"", b"", 0, 0, None)


def _timestamp_text(fragment: bytes) -> str:
    return fragment[len(_TIMESTAMP_LEAD) : -len(_TIMESTAMP_GLUE)].decode()


Counted = tuple[int, int, int, int, int, str | None]
"""What :meth:`Tables.convert` did: rows, ignored lines, blank lines, unprocessable lines
(those it settled itself), served lines that went with their download lines, the earliest
row timestamp."""
Fallback = Callable[[bytes, bytes | None], object]
"""Takes a line (without its newline) a converter cannot convert, with the served line
before it (or None), and appends their results."""

_EMPTY_LINES = re.compile(rb"\n\n+")
_BLANK_LINE = re.compile(rb"^[ \t\r]+\n", re.MULTILINE)
_BLANK_STARTS = (b"\n\r", b"\n ", b"\n\t")


def _without_blank_lines(block: bytes) -> tuple[bytes, int]:
    """The block without its blank lines, and how many there were. Runs of empty lines go
    in one substitution each (a megabyte of newlines is one match, not a million); lines of
    spaces, tabs and CRs one by one, and only in a block where a line may start with one."""
    size = len(block)
    if block[:1] == b"\n" or b"\n\n" in block:
        block = _EMPTY_LINES.sub(b"\n", block).lstrip(b"\n")
    blank = size - len(block)  # each newline removed was an empty line
    if block[:1] in (b" ", b"\t", b"\r") or any(start in block for start in _BLANK_STARTS):
        block, spaces = _BLANK_LINE.subn(b"", block)
        blank += spaces
    return block, blank


def valid_utf8(block: bytes) -> bool:
    """Whether ``block`` decodes as UTF-8 (ASCII checked first: it is much faster)."""
    if block.isascii():
        return True
    try:
        block.decode()
    except UnicodeDecodeError:
        return False
    return True


class Tables(Protocol):
    """One object's results, NDJSON rows per table and unprocessable lines, converted a
    block at a time and handed over in parts."""

    def convert(self, block: bytes, fallback: Fallback, utf8: bool) -> Counted:
        """Convert a block of whole lines (each ending with a newline) and keep the rows;
        each line that needs the per-line parser goes to ``fallback``, in its turn. ``utf8``:
        the block is known to be valid UTF-8."""

    def append(self, downloads: bytes, simple: bytes, unprocessed: bytes) -> None:
        """Keep results made elsewhere (by the per-line parser)."""

    def flush(self) -> int:
        """The object ended: a served line still waiting for its download line goes to the
        unprocessed table. Returns how many did (0 or 1)."""

    def pending(self) -> int:
        """The bytes kept since the last :meth:`finish`."""

    def finish(self) -> tuple[bytes, bytes, bytes]:
        """Everything kept, downloads, simple requests, unprocessable lines; the tables
        start again empty."""


def _surely_unprocessable(line: bytes) -> bool:
    """Whether the parser rejects ``line`` whatever its tidying does: fewer than ten fields,
    or a kind field that no stripping of blanks makes "download" or "simple" (a served
    line's kind is exact)."""
    if line.count(b"|") < 9:
        return True
    kind = line[: line.index(b"|")]
    return b"download" not in kind and b"simple" not in kind and kind != b"served"


class _PythonTables:
    """:class:`Tables` through :func:`convert_block`. A block it cannot convert loses the
    lines the parser would surely reject first, as the C converter settles them (fewer than
    ten fields, a kind field holding neither "download" nor "simple"): they go to the
    unprocessed table as they are, in order, a few hundred nanoseconds each, so a flood of
    junk costs no parser call per line. What remains is halved until the odd line is
    alone."""

    def __init__(self) -> None:
        self._tables = (io.BytesIO(), io.BytesIO(), io.BytesIO())
        self._carried: tuple[bytes, bytes] | None = None  # a served line and its fragment

    def convert(self, block: bytes, fallback: Fallback, utf8: bool) -> Counted:
        block, blank = _without_blank_lines(block)
        # rows, ignored, unprocessable, earliest ("~" sorts after any), served
        counted: list[Any] = [0, 0, 0, "~", 0]
        self._convert(block, fallback, utf8, counted)
        rows, ignored, unprocessable, earliest, served = counted
        return rows, ignored, blank, unprocessable, served, None if earliest == "~" else earliest

    def _convert(self, block: bytes, fallback: Fallback, utf8: bool, counted: list[Any]) -> None:
        if not block:
            return
        carried = None if self._carried is None else self._carried[1]
        converted = convert_block(block, carried) if utf8 or valid_utf8(block) else None
        if converted is not None:
            self.append(converted.downloads, converted.simple, b"")
            counted[0] += converted.rows
            counted[1] += converted.ignored
            counted[4] += converted.served
            self._carried = converted.carried
            if converted.earliest is not None:
                counted[3] = min(counted[3], converted.earliest)
            return
        lines = block.split(b"\n")
        lines.pop()  # after the last newline
        if len(lines) == 1:
            self._line(lines[0], fallback, counted)
            return
        junk = list(map(_surely_unprocessable, lines))
        if not any(junk):
            middle = len(lines) // 2
            self._convert(b"\n".join(lines[:middle]) + b"\n", fallback, utf8, counted)
            self._convert(b"\n".join(lines[middle:]) + b"\n", fallback, utf8, counted)
            return
        start = 0  # of the lines not handled yet
        for index, rejected in enumerate(junk):
            if rejected:
                if start < index:
                    self._convert(b"\n".join(lines[start:index]) + b"\n", fallback, utf8, counted)
                counted[2] += self.flush()
                self.append(b"", b"", lines[index] + b"\n")
                counted[2] += 1
                start = index + 1
        if start < len(lines):
            self._convert(b"\n".join(lines[start:]) + b"\n", fallback, utf8, counted)

    def _line(self, line: bytes, fallback: Fallback, counted: list[Any]) -> None:
        """One line no block conversion took: a served line that cannot be read (or holds
        bytes that are not UTF-8 in its reserved fields) is settled here, anything else goes
        to the per-line parser with the served line carried to it."""
        if line.startswith(SERVED_PREFIX):
            counted[2] += self.flush()
            try:
                parse_served(line.decode("utf-8", "replace"))
            except UnprocessableLine:
                self.append(b"", b"", line + b"\n")
                counted[2] += 1
                return
            fragment = RESPONSE[b"|".join(line.split(b"|")[1:5])]
            assert fragment is not None  # the same rules as parse_served
            self._carried = (line, fragment)
            return
        carried, self._carried = self._carried, None
        fallback(line, None if carried is None else carried[0])

    def flush(self) -> int:
        if self._carried is None:
            return 0
        self.append(b"", b"", self._carried[0] + b"\n")
        self._carried = None
        return 1

    def append(self, downloads: bytes, simple: bytes, unprocessed: bytes) -> None:
        for table, data in zip(self._tables, (downloads, simple, unprocessed), strict=True):
            table.write(data)

    def pending(self) -> int:
        return sum(table.tell() for table in self._tables)

    def finish(self) -> tuple[bytes, bytes, bytes]:
        downloads, simple, unprocessed = (table.getvalue() for table in self._tables)
        self._tables = (io.BytesIO(), io.BytesIO(), io.BytesIO())
        return downloads, simple, unprocessed


class _NativeTables:
    """:class:`Tables` through the C converter (``_columns.c``): the same rows, byte for
    byte, a line at a time in C. It splits each line, checks its structure and joins the
    fragments that this module's memos give for its fields, into one buffer per table (no
    copy per block). Its own per-field tables in front of the memos last for the object,
    bounded in entries and bytes.
    """

    def __init__(self) -> None:
        assert _columns is not None
        self._converter = _columns.Converter(*_FIELD_MEMOS)
        self.append = self._converter.append
        self.flush = self._converter.flush
        self.pending = self._converter.pending
        self.finish = self._converter.finish
        self.cache_sizes = self._converter.cache_sizes

    def convert(self, block: bytes, fallback: Fallback, utf8: bool) -> Counted:
        rows, ignored, blank, unprocessable, served, earliest = self._converter.convert(
            block, fallback, utf8
        )
        text = None if earliest is None else _timestamp_text(earliest)
        return rows, ignored, blank, unprocessable, served, text


def converter_name() -> str:
    """Which converter :func:`object_tables` uses ("C", or "Python" without the extension),
    for ingest to report: an install without a compiler converts at about half the speed."""
    return "Python" if _columns is None else "C"


def object_tables() -> Tables:
    """The tables for one object's results: converted in C when the extension was built, else
    in Python (:func:`convert_block`)."""
    return _PythonTables() if _columns is None else _NativeTables()
