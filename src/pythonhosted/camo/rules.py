"""Allow/deny filter rules by host and path (spec rules 14, 19), in go-camo's ruleset format.

One rule a line (go-camo-filtering(5))::

    {allow|deny}|{host flags}|{host glob}|{path flags}|{path glob}

A rule matches a URL when its host part AND its path part match. Host globs: ``example.com``
(exactly), ``*.example.com`` (any subdomain, not the domain itself), flag ``s`` (the domain
and every subdomain), ``*`` alone (any host); hosts compare case-insensitively in their
ASCII (punycode) form. Path globs match the whole percent-encoded path, ``*`` standing for
any run of characters; flag ``i`` compares ASCII case-insensitively; an empty path glob or
``*`` matches any path. Evaluation is go-camo's: when any allow rule exists a URL must match
one of them, then a URL matching any deny rule is refused.

Lines starting with neither ``allow|`` nor ``deny|`` are skipped, as go-camo skips them (each
is logged, so a typo does not pass silently); ``#`` starts a comment. The format camo used
before, ``{allow|deny}|{host|path}|{flags}|{glob}`` with shell-style globs, is still read.

Rulesets are blocklists in practice, and blocklists are long: rules are indexed by their
domain, so a URL is checked against the rules of its host's domains (one lookup per label)
and the few that any host can match, not against every rule. With 100,000 host rules a
check took 55 ms and parsing 15 s (a regular expression each, tried in turn); domain rules
are now matched by string comparison.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from yarl import URL

from pythonhosted.smallfiles import read_small_file

log = logging.getLogger(__name__)

Action = Literal["allow", "deny"]
# A ruleset is read whole and each rule kept: ~700 bytes of memory and ~17 us of CPU a rule
# (a million: 33 MB of text, 700 MB, 17 s). 16 MiB holds a blocklist of ~400,000 domains;
# a larger file (or /dev/zero) is refused in one line instead of taking the memory.
RULES_MAX_BYTES = 16 * 2**20
# Lines that are not rules are each logged up to this many, then counted in one line.
SKIPPED_SHOWN = 20
_PLAIN_DOMAIN = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*", re.ASCII)


@dataclass(frozen=True)
class Domain:
    """A host glob of go-camo's kinds: ``example.com`` (``exact``), ``*.example.com``
    (``below``) or flag ``s`` (both), over the domain's lower-case ASCII form."""

    name: str
    exact: bool
    below: bool

    def matches(self, host: str) -> bool:
        if host == self.name:
            return self.exact
        return self.below and host.endswith(self.name) and host[-len(self.name) - 1] == "."


@dataclass(frozen=True)
class Rule:
    action: Action
    host: Domain | re.Pattern[str] | None  # None: any host; a pattern: the legacy format
    path: re.Pattern[str] | None  # None: any path
    text: str  # the rule as written, for refusal reasons

    def matches(self, host: str, path: str) -> bool:
        matcher = self.host
        if matcher is not None:
            if isinstance(matcher, Domain):
                if not matcher.matches(host):
                    return False
            elif matcher.fullmatch(host) is None:
                return False
        return self.path is None or self.path.fullmatch(path) is not None


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...] = ()
    # the index (from the rules): rule numbers by domain, those tried for every host
    _by_domain: dict[str, list[int]] = field(init=False, repr=False, compare=False)
    _anywhere: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _has_allow: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_domain: dict[str, list[int]] = {}
        anywhere: list[int] = []  # any host, or a legacy host glob: tried for every URL
        for number, rule in enumerate(self.rules):
            if isinstance(rule.host, Domain):
                by_domain.setdefault(rule.host.name, []).append(number)
            else:
                anywhere.append(number)
        object.__setattr__(self, "_by_domain", by_domain)
        object.__setattr__(self, "_anywhere", tuple(anywhere))
        has_allow = any(rule.action == "allow" for rule in self.rules)
        object.__setattr__(self, "_has_allow", has_allow)

    @classmethod
    def parse(cls, text: str) -> Rules:
        """Rules from ruleset text; ValueError naming the line for a malformed rule."""
        rules = []
        skipped = 0
        paths: dict[tuple[str, bool], re.Pattern[str]] = {}  # one pattern per distinct glob
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            action, sep, rest = line.partition("|")
            if not sep or action not in ("allow", "deny"):
                skipped += 1
                if skipped <= SKIPPED_SHOWN:
                    log.warning(
                        "filter rules: ignoring line %d (not a rule): %r", number, raw[:200]
                    )
                continue
            try:
                rules.append(_parse_rule(action, rest, line, paths))  # type: ignore[arg-type]
            except ValueError as exc:
                raise ValueError(f"filter rule line {number}: {exc}: {raw[:200]!r}") from None
        if skipped > SKIPPED_SHOWN:
            log.warning("filter rules: %d more lines ignored (not rules)", skipped - SKIPPED_SHOWN)
        return cls(tuple(rules))

    @classmethod
    def load(cls, path: Path | None) -> Rules:
        """The ruleset in ``path`` (None: no rules), read within :data:`RULES_MAX_BYTES`."""
        if path is None:
            return cls()
        data = read_small_file(path, RULES_MAX_BYTES, "the filter ruleset")
        try:
            return cls.parse(data.decode())
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"the filter ruleset is not UTF-8 text ({exc.reason}): {path}"
            ) from None

    def candidates(self, host: str) -> list[Rule]:
        """The rules that can match ``host``, in the ruleset's order."""
        by_domain = self._by_domain
        numbers = list(self._anywhere)
        labels = host.split(".")
        for start in range(len(labels)):
            numbers += by_domain.get(".".join(labels[start:]), ())
        return [self.rules[number] for number in sorted(numbers)]

    def refusal(self, host: str, path: str) -> str | None:
        """Why a URL with this host (lower-case ASCII) and raw path is filtered out, or None."""
        if not self.rules:
            return None
        host = host.removesuffix(".")  # "example.com." is example.com, not a way around rules
        candidates = self.candidates(host)
        if self._has_allow and not any(
            rule.action == "allow" and rule.matches(host, path) for rule in candidates
        ):
            return f"{host}{path} matches no allow rule"
        for rule in candidates:
            if rule.action == "deny" and rule.matches(host, path):
                return f"{host}{path} matches deny rule {rule.text}"
        return None


def _parse_rule(
    action: Action, rest: str, line: str, paths: dict[tuple[str, bool], re.Pattern[str]]
) -> Rule:
    fields = [field.strip() for field in rest.split("|")]
    if len(fields) == 3 and fields[0] in ("host", "path"):
        return _legacy_rule(action, fields, line)
    while len(fields) > 4 and fields[-1] == "":  # go-camo trims surplus trailing pipes
        fields.pop()
    if len(fields) != 4:
        raise ValueError("expected allow|FLAGS|HOST|FLAGS|PATH")
    host_flags, host_glob, path_flags, path_glob = fields
    if set(host_flags) - {"s"} or set(path_flags) - {"i"}:
        raise ValueError("unknown flag (host: s, path: i)")
    path = None
    if path_glob not in ("", "*"):
        key = (path_glob, "i" in path_flags)
        path = paths.get(key) or paths.setdefault(key, _path_pattern(*key))
    return Rule(action, _host_domain(host_glob, "s" in host_flags), path, line)


def _host_domain(glob: str, subdomains: bool) -> Domain | None:
    """go-camo's domain match: ``*`` only as a whole leftmost label."""
    if glob == "*":
        return None
    wildcard = glob.startswith("*.")
    domain = glob[2:] if wildcard else glob
    domain = domain.strip(".").lower()
    if not domain or "*" in domain or any(not label for label in domain.split(".")):
        raise ValueError(f"bad host glob {glob!r} (a * only as the whole leftmost label)")
    if _PLAIN_DOMAIN.fullmatch(domain):
        ascii_domain = domain  # already its ASCII form: yarl's IDNA pass is most of a parse
    else:
        try:
            ascii_domain = URL.build(scheme="http", host=domain).raw_host or ""
        except ValueError:
            raise ValueError(f"bad host {domain!r}") from None
    return Domain(ascii_domain, exact=not wildcard, below=wildcard or subdomains)


def _path_pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    """A path glob over the percent-encoded path, ``*`` for any run of characters."""
    if "?" in glob or "#" in glob:
        raise ValueError("a path glob cannot hold a query or fragment")
    # each piece percent-encoded as request paths are (escapes kept, %7c read as %7C)
    parts = [URL("http://h/" + part).raw_path[1:] for part in glob.split("*")]
    flags = re.DOTALL | (re.IGNORECASE | re.ASCII if ignore_case else 0)
    return re.compile(".*".join(re.escape(part) for part in parts), flags)


def _legacy_rule(action: Action, fields: list[str], line: str) -> Rule:
    """camo's earlier format: ``{allow|deny}|{host|path}|{i or nothing}|{shell glob}``."""
    part, flags, glob = fields
    if flags not in ("", "i") or not glob:
        raise ValueError("expected allow|host|i|GLOB")
    if part == "host":
        return Rule(action, re.compile(fnmatch.translate(glob.lower())), None, line)
    flags_re = re.IGNORECASE if flags == "i" else 0
    return Rule(action, None, re.compile(fnmatch.translate(glob), flags_re), line)
