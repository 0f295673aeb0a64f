"""User agent -> ``details`` record, ignore verdict, or unknown.

Each family is a function returning a partial mapping when it recognises the string, else
``None``. The spec says families are order-independent and the first that recognises the
string wins; we try them in a fixed order, anchored families first (pip and uv, the bulk of
the traffic, lead), then devpi and pex, whose patterns can match anywhere in the string.
Only when no family recognises the string is the ignore list consulted.

The reference tries its parsers in a random order, so for the rare strings that more than one
family recognises (say ``Mozilla/5.0 ... pex/1.0``) its answer depends on the process; ours
is the first family in our order.

Results are cached per distinct string (:data:`KNOWN`, bounded in entries and bytes): real
batches repeat a few thousand strings over and over, and a hostile one of unique agents only
refills the cache. The cached records are shared, read-only
:class:`~pythonhosted.linehaul.details.Record` objects.
"""

from __future__ import annotations

import enum
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from pythonhosted.linehaul.details import Record, structure
from pythonhosted.linehaul.memo import Memo

Partial = dict[str, Any]
Family = Callable[[str], Partial | None]

CACHE_SIZE = 8192
CACHE_BYTES = 64 << 20  # entries weigh ~6.5 kB as estimated (~2.7 kB really): 8,192 fit


class Ignored(enum.Enum):
    """Verdict for a user agent on the ignore list: its event is dropped."""

    IGNORED = enum.auto()


IGNORED = Ignored.IGNORED


def recognise(user_agent: str) -> Record | Ignored | None:
    """The details record, IGNORED, or None for an unknown agent (uncached: use KNOWN)."""
    for family in _FAMILIES:
        partial = family(user_agent)
        if partial is not None:
            return structure(partial)
    return IGNORED if _IGNORE.search(user_agent) else None


def record_size(value: object) -> int:
    """A details record's memory: its dicts and strings (keys are the schema's, shared)."""
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(map(record_size, value.values()))
    return sys.getsizeof(value) if isinstance(value, str) else 0


def entry_size(user_agent: str, known: object) -> int:
    """An upper bound of the memory of an agent and its record, without walking the record
    (:func:`record_size` costs a quarter of parsing the agent): the record's strings come
    from the agent, at most five times as long (shell quoting of a subcommand), plus a few
    kB of dicts, headers and numbers written out."""
    size = sys.getsizeof(user_agent)
    return size if known is None or known is IGNORED else 6 * size + 4096


KNOWN: Memo[str, Record | Ignored | None] = Memo(recognise, CACHE_SIZE, CACHE_BYTES, entry_size)
"""``KNOWN[user_agent]``: :func:`recognise`, cached; records are shared and read-only."""


def _version_in(text: str, spec: SpecifierSet) -> bool:
    try:
        return Version(text) in spec
    except InvalidVersion:
        return False


def _json(text: str) -> object:
    """The JSON value, or None if the text is not JSON.

    The standard library's parser, not orjson: it is what the reference uses, so NaN, huge
    integers and lone surrogates come out the same (orjson rejects some and turns integers
    beyond 64 bits into floats), and once per distinct agent it costs less than orjson plus a
    guard against those cases.
    """
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _json_family(installer: str, minimum: str) -> Family:
    """``{installer}/{version} {json}``, for versions >= minimum (pre-releases included)."""
    prefix = installer + "/"
    spec = SpecifierSet(f">={minimum}", prereleases=True)
    recent: Memo[str, bool] = Memo(lambda version: _version_in(version, spec), 1024, 1 << 20)

    def parse(user_agent: str) -> Partial | None:
        if not user_agent.startswith(prefix):
            return None
        words = user_agent.split(None, 1)
        if len(words) < 2 or not recent[words[0][len(prefix) :]]:
            return None
        data = _json(words[1])
        return data if isinstance(data, dict) else None

    return parse


def _regex_family(
    pattern: str, build: Callable[[re.Match[str]], Partial | None], *, mode: str = "full"
) -> Family:
    """A family recognised by a regex matched in full, as a prefix, or ending the string."""
    regex = re.compile(pattern if mode != "end" else pattern + r"\Z")
    match = {"full": regex.fullmatch, "prefix": regex.match, "end": regex.search}[mode]

    def parse(user_agent: str) -> Partial | None:
        found = match(user_agent)
        return None if found is None else build(found)

    return parse


def _installer(name: str) -> Callable[[re.Match[str]], Partial]:
    def build(found: re.Match[str]) -> Partial:
        data: Partial = {"installer": {"name": name, "version": found["version"]}}
        if "python" in found.re.groupindex:
            data["python"] = found["python"]
        if "impl_name" in found.re.groupindex:
            data["implementation"] = {"name": found["impl_name"], "version": found["impl_version"]}
        if "system_name" in found.re.groupindex:
            data["system"] = {"name": found["system_name"], "release": found["system_release"]}
        return data

    return build


def _constant(data: Partial) -> Callable[[re.Match[str]], Partial]:
    return lambda found: data


_PIP_1_4 = SpecifierSet(">=1.4,<6", prereleases=True)


def _old_pip(found: re.Match[str]) -> Partial | None:
    """pip 1.4 - <6: ``unknown`` parts are left out; python is known only for CPython."""
    if not _version_in(found["version"], _PIP_1_4):
        return None
    data: Partial = {"installer": {"name": "pip", "version": found["version"]}}
    known = {key: value for key, value in found.groupdict().items() if value.lower() != "unknown"}
    if "impl_name" in known or "impl_version" in known:
        data["implementation"] = {
            "name": known.get("impl_name"),
            "version": known.get("impl_version"),
        }
    if "system_name" in known or "system_release" in known:
        data["system"] = {"name": known.get("system_name"), "release": known.get("system_release")}
    if found["impl_name"].lower() == "cpython":
        data["python"] = found["impl_version"]
    return data


def _homebrew(found: re.Match[str]) -> Partial:
    return {
        "installer": {"name": "Homebrew", "version": found["version"]},
        "distro": {"name": "OS X", "version": found["macos"]},
    }


_V = r"(?P<version>\S+)"
_IMPL = r"(?P<impl_name>\S+)/(?P<impl_version>\S+)"
_SYSTEM = r"(?P<system_name>\S+)/(?P<system_release>\S+)"
_URLLIB = r"Python-urllib/(?P<python>\d\.\d)"

_OS = (
    r"fetch libfetch/\S+\Z|libfetch/\S+\Z|OpenBSD ftp\Z|MacPorts|NetBSD-ftp/|slapt-get"
    r"|pypi-install/|slackrepo\Z|PTXdist|GARstow/|xbps/"
)
_BROWSER = (
    r"(?i:Mozilla|Safari|wget|curl|Opera|aria2|AndroidDownloadManager"
    r"|com\.apple\.WebKit\.Networking/|FDM \S+|URL/Emacs|Firefox/|UCWEB|Links|okhttp"
    r"|Apache-HttpClient)(?:/|\Z)"
)

_FAMILIES: tuple[Family, ...] = (
    _json_family("pip", "6"),
    _regex_family(rf"pip/{_V} {_IMPL} {_SYSTEM}", _old_pip),
    _json_family("uv", "0.1.22"),
    _regex_family(rf"{_URLLIB} setuptools/{_V}", _installer("setuptools")),
    _regex_family(rf"setuptools/{_V} {_URLLIB}", _installer("setuptools")),
    _regex_family(rf"{_URLLIB} distribute/{_V}", _installer("distribute")),
    _regex_family(_URLLIB, lambda found: {"python": found["python"]}),
    _regex_family(rf"conda/{_V}(?: .+)?", _installer("conda")),
    _regex_family(r"Bazel/(?:release\s+)?(?P<version>.+)", _installer("Bazel")),
    _regex_family(rf"bandersnatch/{_V} \(.+\)", _installer("bandersnatch")),
    _regex_family(rf"z3c\.pypimirror/{_V}", _installer("z3c.pypimirror")),
    _regex_family(rf"Artifactory/{_V}", _installer("Artifactory")),
    _regex_family(rf"Nexus/{_V}", _installer("Nexus"), mode="prefix"),
    _regex_family(rf"pep381client(?:-proxy)?/{_V}", _installer("pep381client")),
    _regex_family(rf"maturin/{_V}", _installer("maturin")),
    _regex_family(rf"pdm/{_V} {_IMPL}", _installer("pdm")),
    _regex_family(
        rf"poetry/{_V} {_IMPL} (?P<system_name>\S+)/(?P<system_release>\S+)?", _installer("poetry")
    ),
    _regex_family(rf"twine/{_V}(?: .+)? {_IMPL}", _installer("twine")),
    _regex_family(rf"python-requests/{_V}(?: .+)?", _installer("requests")),
    _regex_family(
        rf"Homebrew/{_V} \(Macintosh; Intel (?:Mac OS X|macOS) (?P<macos>[^)]+)\)(?: .+)?",
        _homebrew,
    ),
    _regex_family(_OS, _constant({"installer": {"name": "OS"}}), mode="prefix"),
    _regex_family(_BROWSER, _constant({"installer": {"name": "Browser"}}), mode="prefix"),
    _regex_family(rf"devpi-server/{_V} \(.+\)", _installer("devpi"), mode="end"),
    _regex_family(rf"pex/{_V}", _installer("pex"), mode="end"),
)

# Monitoring bots, crawlers and clients that are not installers: their events are dropped.
_IGNORE = re.compile(
    r"\A(?:Datadog Agent/|\(null\)\Z|WordPress/|Chef (?:Client|Knife)/|Ruby\Z"
    r"|Slackbot-LinkExpanding|TextualInlineMedia/|WeeChat/|Download Master\Z|Java/"
    r"|Go \d\.\d package http\Z|Go-http-client/|GNU Guile\Z|github-olee\Z|YisouSpider\Z"
    r"|Apache Ant/|Salt/|ansible-httpget\Z|ltx71 - \(http://ltx71.com/\)|Scrapy/|spectool/"
    r"|AWSBrewLinkChecker/|Y!J-ASR/|NSIS_Inetc \(Mozilla\)\Z|Debian uscan"
    r"|Pingdom\.com_bot_version_\d+\.\d+_\(https?://www.pingdom.com/\)\Z"
    r"|MauiBot \(crawler\.feedback\+dc@gmail\.com\)\Z|inspector\.pypi\.io\Z)"
    r"|Nutch"
)
