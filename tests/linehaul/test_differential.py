"""Ours against the reference (linehaul 1.0.3) on a large generated corpus, line by line.

Every line carries the tag of the rule it is checked under: ``same`` (identical outcome:
the same row, both ignore it, or both reject it) or one of the documented differences
(pythonhosted.linehaul's docstring, docs/linehaul.md), each checked for exactly the
documented behaviour. Agents that more than one reference family recognises are checked
against that family set whatever their tag, since the reference's own answer is random.
"""

from __future__ import annotations

import functools
import json
import random
import shlex
from collections import Counter
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import cattrs
import pytest
from linehaul.events import parser as reference_parser
from linehaul.events.parser import UnparseableEvent
from linehaul.ua import parser as reference_ua
from linehaul.ua.datastructures import UserAgent
from linehaul.ua.impl import UnableToParse

from pythonhosted.linehaul import UnprocessableLine, parse
from pythonhosted.linehaul.events import parse_served
from pythonhosted.logline import served_download_lines, served_line
from pythonhosted.warehouse.schema import DETAILS, Field

LINES = 30_000
# The corpus is checked in pieces (every PIECES-th line each) so that pytest-xdist spreads its
# 13 s of CPU over its workers; each piece holds the corpus's bounds in proportion.
PIECES = 10
UNPROCESSABLE = "unprocessable"
IGNORED = "ignored"
_CONVERTER = cattrs.Converter()

Outcome = dict[str, Any] | str
RowFn = Callable[[str], dict[str, Any] | None]


def outcome(fn: RowFn, line: str) -> Outcome:
    try:
        row = fn(line)
    except UnprocessableLine:
        return UNPROCESSABLE
    except Exception:  # the reference raises all sorts
        if fn is parse:
            raise
        return UNPROCESSABLE
    return IGNORED if row is None else row


@functools.cache
def reference_families(user_agent: str) -> list[Any]:
    """What each reference family that recognises the agent makes of it."""
    found: list[Any] = []
    for family in reference_ua._parser._parsers:
        try:
            data = family(user_agent)
        except UnableToParse:
            continue
        except Exception:  # the reference's ParserSet logs these and moves on
            continue
        try:
            details = _CONVERTER.unstructure(_CONVERTER.structure(data, UserAgent))
        except Exception:
            found.append(UNPROCESSABLE)
            continue
        installer = details["installer"]
        if installer is not None and installer["subcommand"] is not None:
            installer["subcommand"] = shlex.join(installer["subcommand"])
        found.append(details)
    return found


# -- the corpus ----------------------------------------------------------------------------

PYTHONS = ["3.8.18", "3.12.2", "2.7.18", "3.13.0rc1", None]


def pip_json(rng: random.Random, *, installer: str = "pip") -> str:
    """A well-typed pip/uv JSON agent with a random subset of the fields."""
    version = rng.choice(
        ["24.0", "6.0", "20.0.2", "23.3.dev0", "9.0.1"]
        if installer == "pip"
        else ["0.1.22", "0.4.30", "0.2.0a1", "1.0.0"]
    )
    python = rng.choice(PYTHONS)
    data: dict[str, Any] = {
        "installer": {"name": installer, "version": version},
        "python": python,
        "implementation": rng.choice([{"name": "CPython", "version": python}, {"name": "PyPy"}]),
        "distro": rng.choice(
            [
                {"name": "Ubuntu", "version": "22.04", "id": "jammy", "libc": {"lib": "glibc"}},
                {"name": "macOS", "version": "14.4", "id": None, "libc": None},
                {},
                None,
            ]
        ),
        "system": {"name": rng.choice(["Linux", "Darwin", "Windows", "Ünïcode"]), "release": "6.5"},
        "cpu": rng.choice(["x86_64", "arm64", None]),
        "openssl_version": "OpenSSL 3.0.2 15 Mar 2022",
        "setuptools_version": rng.choice(["69.0.3", None]),
        "rustc_version": rng.choice(["1.74.1", None]),
        "ci": rng.choice([True, False, None]),
        "unknown_key": {"ignored": [1, 2]},
    }
    if rng.random() < 0.4:
        data["installer"]["subcommand"] = rng.choice(
            [["pip", "install"], ["pip", "install", "a b", "it's"], [], ["sync"]]
        )
    for key in rng.sample(sorted(data), rng.randrange(0, 4)):
        del data[key]
    separators = rng.choice([(",", ":"), (", ", ": ")])
    return f"{installer}/{version} {json.dumps(data, separators=separators, ensure_ascii=False)}"


# JSON of the wrong shape: documented difference 3 (value -> our rule, checked per leaf).
ILL_TYPED = [
    {"python": 3.8, "cpu": True, "ci": "yes"},
    {"python": {"a": 1}, "ci": 0},
    {"installer": "pip", "distro": []},
    {"installer": {"name": 1, "subcommand": "install"}},
    {"installer": {"subcommand": ["install", None]}},
    {"installer": {"subcommand": ["install", 3, 1.5, True]}},
    {"distro": {"libc": "glibc", "name": ["x"]}},
    {"system": {"name": None, "release": 5}, "ci": "false"},
    {"python": 12345678901234567890123},
]
NOT_OBJECTS = ["null", "[1, 2]", '"python"', "5", "true"]

OTHER_AGENTS = [
    "pip/1.4.1 CPython/2.7.14 Darwin/17.7.0",
    "pip/1.5.6 unknown/unknown Unknown/unknown",
    "pip/5.9 PyPy/2.4.0 Linux/3.2",
    "pip/6.0 CPython/2.7 Linux/3.2",
    "pip/abc {}",
    "pip/20.0",
    "pip/20.0 not json",
    "uv/0.1.21 {}",
    "Python-urllib/2.7 setuptools/0.6c11",
    "setuptools/3.5 Python-urllib/3.4",
    "Python-urllib/2.6 distribute/0.6.10",
    "Python-urllib/3.11",
    "Python-urllib/3.11 extra",
    "pex/1.5.3",
    "conda/4.5.11 requests/2.19.1 CPython/3.6.6",
    "Bazel/release 0.17.2",
    "Bazel/1.0 dev",
    "bandersnatch/3.0.0 (cpython 3.7.0-final0, Darwin x86_64)",
    "devpi-server/4.7.1 (py3.6.6; linux)",
    "z3c.pypimirror/1.0.16",
    "Artifactory/6.2.0",
    "Nexus/3.13.0-01 (OSS; Linux; 4.15.0; amd64; 1.8.0_181)",
    "pep381client-proxy/1.5",
    "pep381client/1.5",
    "maturin/1.4.0",
    "pdm/2.11.1 CPython/3.12.1",
    "poetry/1.7.1 CPython/3.11.7 Linux/6.5.0",
    "poetry/1.7.1 CPython/3.11.7 Linux/",
    "twine/4.0.2 CPython/3.9.16",
    "twine/3.8.0 pkginfo/1.9.6 requests/2.27.1 CPython/3.9.16",
    "python-requests/2.31.0",
    "python-requests/2.31.0 CPython/3.11",
    "Homebrew/1.7.6 (Macintosh; Intel Mac OS X 10.13.6) curl/7.54.0",
    "Homebrew/4.2.0 (Macintosh; Intel macOS 14.2) curl/8.4.0",
    "fetch libfetch/2.0",
    "OpenBSD ftp",
    "MacPorts/2.8.1",
    "NetBSD-ftp/20180605",
    "slapt-get/0.11",
    "pypi-install/0.1",
    "slackrepo",
    "PTXdist 2023",
    "GARstow/1.0",
    "xbps/0.59",
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
    "curl/8.4.0",
    "Wget/1.21",
    "okhttp/4.12",
    "Apache-HttpClient/4.5.14 (Java/17)",
    "AndroidDownloadManager/13",
    "FDM 3.x",
    "links",
    "Datadog Agent/7.50",
    "(null)",
    "WordPress/6.4",
    "Chef Client/18.0",
    "Ruby",
    "Java/17.0.2",
    "Go-http-client/1.1",
    "Go 1.1 package http",
    "Mozilla/5.0 (compatible; Nutch)",
    "Apache Nutch crawler",
    "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
    "inspector.pypi.io",
    "Debian uscan 2.23",
    "",
    "This is a User Agent! However we have no idea what kind it is.",
    "ünïcödé/1.0 ☃",
    "agent|with|pipes",
    'pip/20.0 {"python": "3.8|pipe"}',
    "pip/20.0 {}\r",
]
# Agents that more than one reference family recognises (difference 4).
MULTI_FAMILY = [
    "Mozilla/5.0 pex/1.0",
    "curl/7.0 devpi-server/1.0 (x)",
    "devpi-server/1.0 (pex/1.0)",
    'pip/20.0 {"x": "pex/1"}',
    "Bazel/1.0 pex/2.0",
    "conda/4.5 devpi-server/1.0 (y)",
    'pip/20.0 ["pex/1"]',  # not an object (difference 3): pex, one of the reference's answers
]
HUGE = "Mozilla/5.0 " + "x" * 1_048_576


def agent(rng: random.Random) -> tuple[str, str]:
    """A user agent and its tag."""
    roll = rng.random()
    if roll < 0.45:
        return "same", pip_json(rng)
    if roll < 0.6:
        return "same", pip_json(rng, installer="uv")
    if roll < 0.63:
        version = rng.choice(["pip/24.0", "uv/0.4.0"])
        return "json-shape", f"{version} {json.dumps(rng.choice(ILL_TYPED))}"
    if roll < 0.64:
        return "json-not-object", f"pip/24.0 {rng.choice(NOT_OBJECTS)}"
    if roll < 0.65:
        return "multi-family", rng.choice(MULTI_FAMILY)
    return "same", rng.choice(OTHER_AGENTS)


def timestamp(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.95:
        return formatdate(rng.randrange(1_300_000_000, 1_800_000_000), usegmt=True)
    return rng.choice(
        [
            "yesterday",
            "",
            "Thu, 32 Jan 2021 20:54:54 GMT",
            "Thu, 07 Foo 2021 20:54:54 GMT",
            "Thu, 07 Jan 2021 25:54:54 GMT",
            "Fri, 07 Jan 2021 20:54:54 GMT",
            "Thu, 7 Jan 2021 20:54:54 UTC",
            " Thu, 07 Jan 2021 20:54:54 GMT",
            "Thu, 07 Jan 2021 20:54:54 GMT ",
            "Thu,  7 Jan 2021 20:54:54 GMT",
            "Thu, 07 Jan 2021 20:54:54",
        ]
    )


def line(rng: random.Random) -> tuple[str, str]:
    """One log line and its tag."""
    tag, user_agent = agent(rng)
    kind = "download" if rng.random() < 0.85 else "simple"
    project = rng.choice(["foo", "Foo.Bar_baz", "a" * 50])
    version = rng.choice(["1.0", "2.0rc1", "1!2.0.post1+local"])
    country = rng.choice(["US", "", "(null)", "de"])
    tls = [rng.choice(["TLSv1.2", "TLSv1.3", "(null)"]), rng.choice(["AES256-GCM", "(null)"])]
    if kind == "download":
        package_type = rng.choice(["sdist", "bdist_wheel", "bdist_egg", "bdist_wininst"])
        url = f"/packages/ab/cd/{'e' * 60}/{project}-{version}.tar.gz"
        fields = [kind, timestamp(rng), country, url, *tls, project, version, package_type]
    else:
        url = f"/simple/{project}/"
        fields = [kind, timestamp(rng), country, url, *tls, "", "", ""]
    roll = rng.random()
    plain_agent = tag == "same"  # one documented difference per line at most
    if roll < 0.02 and plain_agent:  # an empty TLS field (the reference rejects the line)
        fields[rng.choice([4, 5])] = ""
        tag = "empty-tls"
    elif roll < 0.04:  # absent or bad project fields
        index = rng.choice([6, 7, 8])
        fields[index] = rng.choice(["(null)", "", "bdist_foo", "x"])
    elif roll < 0.06:  # blanks the reference's grammar skips or keeps
        index = rng.randrange(0, 9)
        fields[index] = rng.choice([" ", "  ", "\t", " \t"]) + fields[index]
        if rng.random() < 0.5:
            fields[index] += rng.choice([" ", "\t", "\r", "\r ", " \r"])
    elif roll < 0.07:  # a control character inside a field
        index = rng.randrange(0, 9)
        spot = rng.randrange(0, len(fields[index]) + 1)
        control = rng.choice(["\x00", "\x07", "\x1b", "\x7f", "\r", "\x0b"])
        fields[index] = fields[index][:spot] + control + "x" + fields[index][spot:]
    elif roll < 0.08 and plain_agent:  # characters the reference refuses outside the user agent
        index = rng.choice([2, 3, 6, 7])
        fields[index] += rng.choice(["@", "é", "☃", "\u00a0"])
        tag = "exotic"
    elif roll < 0.09:  # wrong field counts
        del fields[rng.randrange(0, 9)]
        if rng.random() < 0.5:
            fields.insert(1, "extra")
            fields.insert(1, "extra")
    elif roll < 0.095:  # the pre-2018 formats
        header = rng.choice(["2@", "1@", ""])
        body = [fields[1], fields[2], fields[3]] + ([*tls] if header == "2@" else [])
        text = header + "|".join([*body, "foo", "1.0", "sdist", user_agent])
        return tag, text  # the reference's grammar reads them, then fails to make a row
    elif roll < 0.1:  # other kinds and junk
        fields[0] = rng.choice(["upload", "DOWNLOAD", "simplex", "", "download2"])
    text = "|".join([*fields, user_agent])
    roll = rng.random()
    if roll < 0.05:
        text += "\n"
    elif roll < 0.06:
        text += "\r\n"
    elif roll < 0.065:
        text += "\n  \n"
    elif roll < 0.07:  # a line break the reference skips (next to a "|") or not
        spot = text.index("|", rng.randrange(0, 60))
        text = text[:spot] + rng.choice(["\n", "\r\n", "\nx"]) + text[spot:]
    return tag, text


def corpus() -> list[tuple[str, str]]:
    rng = random.Random(20210107)
    lines = [line(rng) for _ in range(LINES)]
    base = (
        "download|Thu, 07 Jan 2021 20:54:54 GMT|US|/packages/a/b/c/x-1.tar.gz|TLSv1.2|C|x|1|sdist"
    )
    lines.append(("same", f"{base}|{HUGE}"))
    lines.append(("same", f"{base}|pip/24.0 {json.dumps({'python': 'x' * 1_048_576})}"))
    return lines


# -- the checks, one per tag -----------------------------------------------------------------


def check_same(text: str, ours: Outcome, theirs: Outcome, reference: RowFn) -> None:
    assert ours == theirs


def check_empty_tls(text: str, ours: Outcome, theirs: Outcome, reference: RowFn) -> None:
    """Difference 1: an empty TLS field reads as (null)."""
    fields = text.split("|", 9)
    for index in (4, 5):
        if not fields[index].strip(" \t"):
            fields[index] = "(null)"
    assert ours == outcome(reference, "|".join(fields))


def check_exotic(text: str, ours: Outcome, theirs: Outcome, reference: RowFn) -> None:
    """Difference 2: '@' and non-ASCII are kept (the reference rejects the line)."""
    assert theirs == UNPROCESSABLE
    fields = text.split("|", 9)
    expected = outcome(reference, "|".join([*map(_scrub, fields[:9]), fields[9]]))
    if isinstance(ours, dict):
        details = ours["details"]
        ours = json.loads(_scrub(json.dumps({**ours, "details": None}, ensure_ascii=False)))
        ours["details"] = details
    assert ours == expected


def _scrub(text: str) -> str:
    """The text with the exotic characters replaced by 'x'."""
    for char in ("@", "é", "☃", "\u00a0"):
        text = text.replace(char, "x")
    return text


def check_json_shape(text: str, ours: Outcome, theirs: Outcome, reference: RowFn) -> None:
    """Difference 3: ill-typed JSON values follow our coercion rules, leaf by leaf."""
    if ours == UNPROCESSABLE:  # for a reason elsewhere in the line
        assert theirs == UNPROCESSABLE
        return
    assert isinstance(ours, dict)
    data = json.loads(text.split("|", 9)[9].split(None, 1)[1])
    if isinstance(theirs, dict):
        assert {**ours, "details": None} == {**theirs, "details": None}
        _same_leaves(DETAILS.fields, data, ours["details"], theirs["details"])
    else:  # the reference crashed on the JSON (it looks up keys in a string, say)
        assert theirs == UNPROCESSABLE
        assert ours["details"] is not None


def _same_leaves(
    fields: tuple[Field, ...], data: Any, ours: dict[str, Any], theirs: dict[str, Any] | None
) -> None:
    """Well-typed values as the reference has them; ill-typed ones (and their records) null."""
    for field in fields:
        given = data.get(field.name)
        value = ours[field.name]
        reference = theirs.get(field.name) if isinstance(theirs, dict) else None
        if field.type == "RECORD":
            if isinstance(given, dict):
                _same_leaves(field.fields, given, value, reference)
            else:
                assert value is None, field.name
        elif _well_typed(field, given):
            assert value == reference, (field.name, value, reference)
        else:
            assert value is None, (field.name, given)


def _well_typed(field: Field, value: object) -> bool:
    scalar = (str, int, float)
    if value is None:
        return True
    if field.type == "BOOLEAN":
        return isinstance(value, bool)
    if field.name == "subcommand":
        return isinstance(value, list) and all(isinstance(arg, scalar) for arg in value)
    return isinstance(value, scalar)


def check_json_not_object(text: str, ours: Outcome, theirs: Outcome, reference: RowFn) -> None:
    """Difference 3: JSON that is not an object: the agent is not recognised."""
    if ours == UNPROCESSABLE:  # for a reason elsewhere in the line
        assert theirs == UNPROCESSABLE
        return
    assert isinstance(ours, dict)
    assert ours["details"] is None
    if isinstance(theirs, dict):
        assert {**ours, "details": None} == {**theirs, "details": None}
    else:
        assert theirs == UNPROCESSABLE


def check_multi_family(text: str, ours: Outcome, theirs: Outcome, reference: RowFn) -> None:
    """Difference 4: the reference's answer is random among its families; ours is one. A
    line end of CR LF leaves the CR in the agent, which then no family knows (for either
    parser): the answers must then be the same."""
    if isinstance(ours, dict) and (
        families := reference_families(text.split("|", 9)[9].partition("\n")[0])
    ):
        assert ours["details"] in families
        theirs = {**theirs, "details": ours["details"]} if isinstance(theirs, dict) else theirs
    assert ours == theirs


CHECKS = {
    "same": check_same,
    "empty-tls": check_empty_tls,
    "exotic": check_exotic,
    "json-shape": check_json_shape,
    "json-not-object": check_json_not_object,
    "multi-family": check_multi_family,
}


@pytest.fixture(scope="module")
def lines() -> list[tuple[str, str]]:
    return corpus()


def test_corpus_covers_every_rule(lines: list[tuple[str, str]]) -> None:
    tags = Counter(tag for tag, _ in lines)
    assert set(tags) == set(CHECKS)
    assert tags["same"] > LINES * 0.8
    assert tags["multi-family"] > 50


@pytest.mark.parametrize("piece", range(PIECES))
def test_differential(lines: list[tuple[str, str]], piece: int, ref_row: RowFn) -> None:
    outcomes: Counter[str] = Counter()
    for tag, text in lines[piece::PIECES]:
        ours = outcome(parse, text)
        theirs = outcome(ref_row, text)
        if tag == "same":  # the tag is right: at most one reference family knows the agent
            assert len(reference_families(text.split("|", 9)[-1].partition("\n")[0])) <= 1
        CHECKS[tag](text, ours, theirs, ref_row)
        outcomes[ours if isinstance(ours, str) else "row"] += 1
    assert outcomes["row"] > LINES / PIECES * 0.7
    assert outcomes[IGNORED] > 100 / PIECES
    assert outcomes[UNPROCESSABLE] > 1000 / PIECES


def test_the_reference_reads_what_our_edge_writes(ref_row: RowFn) -> None:
    """Our edge writes each download as a served line and the reference's download line. The
    reference rejects the served line as unparseable (``UnparseableEvent``, which its cloud
    function sets aside) and reads the download line to the row we make, less ``response``."""
    rng = random.Random(3)
    checked = 0
    for number in range(300):
        user_agent, _ = agent(rng)
        facts = served_line(
            rng.choice([200, 206]), rng.randrange(10**9), rng.random() < 0.5, rng.randrange(10**6)
        )
        written = served_download_lines(
            facts,
            timestamp=1_700_000_000 + number * 97,
            country=rng.choice(["US", "", "DE"]),
            url=f"/packages/ab/cd/{'e' * 60}/demo_{number}-1.0-py3-none-any.whl",
            tls_protocol=rng.choice(["TLSv1.3", None]),
            tls_cipher=rng.choice(["TLS_AES_128_GCM_SHA256", None]),
            project=f"demo-{number}",
            version="1.0",
            package_type="bdist_wheel",
            user_agent=user_agent,
        )
        served, download = written.split("\n")
        with pytest.raises(UnparseableEvent):
            reference_parser.parse(served)
        theirs = outcome(ref_row, download)
        if len(reference_families(user_agent)) > 1 or isinstance(theirs, str):
            continue  # the reference's answer is random, or it ignores the agent
        ours = parse(download, parse_served(served))
        assert ours is not None
        assert ours.pop("response") == parse_served(served)
        check_same(download, ours, theirs, ref_row)
        checked += 1
    assert checked > 200


@pytest.mark.parametrize("end", ["", "\n", "\r\n", "\n  \n"])
def test_multi_family_agents_at_every_line_end(end: str, ref_row: RowFn) -> None:
    """The corpus's seed may never end such a line so; its check must hold when it does."""
    text = (
        "download|Thu, 07 Jan 2021 20:54:54 GMT|US|/packages/a/b/c/x-1.tar.gz|TLSv1.2|C|x|1|"
        f"sdist|devpi-server/1.0 (pex/1.0){end}"
    )
    assert len(reference_families("devpi-server/1.0 (pex/1.0)")) > 1
    check_multi_family(text, outcome(parse, text), outcome(ref_row, text), ref_row)
