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
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from yarl import URL

log = logging.getLogger(__name__)

Action = Literal["allow", "deny"]


@dataclass(frozen=True)
class Rule:
    action: Action
    host: re.Pattern[str] | None  # None: any host
    path: re.Pattern[str] | None  # None: any path
    text: str  # the rule as written, for refusal reasons

    def matches(self, host: str, path: str) -> bool:
        return (self.host is None or self.host.fullmatch(host) is not None) and (
            self.path is None or self.path.fullmatch(path) is not None
        )


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Rules:
        """Rules from ruleset text; ValueError naming the line for a malformed rule."""
        rules = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            action, sep, rest = line.partition("|")
            if not sep or action not in ("allow", "deny"):
                log.warning("filter rules: ignoring line %d (not a rule): %r", number, raw)
                continue
            try:
                rules.append(_parse_rule(action, rest, line))  # type: ignore[arg-type]
            except ValueError as exc:
                raise ValueError(f"filter rule line {number}: {exc}: {raw!r}") from None
        return cls(tuple(rules))

    @classmethod
    def load(cls, path: Path | None) -> Rules:
        return cls() if path is None else cls.parse(path.read_text())

    def refusal(self, host: str, path: str) -> str | None:
        """Why a URL with this host (lower-case ASCII) and raw path is filtered out, or None."""
        if not self.rules:
            return None
        host = host.removesuffix(".")  # "example.com." is example.com, not a way around rules
        allows = [rule for rule in self.rules if rule.action == "allow"]
        if allows and not any(rule.matches(host, path) for rule in allows):
            return f"{host}{path} matches no allow rule"
        for rule in self.rules:
            if rule.action == "deny" and rule.matches(host, path):
                return f"{host}{path} matches deny rule {rule.text}"
        return None


def _parse_rule(action: Action, rest: str, line: str) -> Rule:
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
    path = None if path_glob in ("", "*") else _path_pattern(path_glob, "i" in path_flags)
    return Rule(action, _host_pattern(host_glob, "s" in host_flags), path, line)


def _host_pattern(glob: str, subdomains: bool) -> re.Pattern[str] | None:
    """go-camo's domain match: ``*`` only as a whole leftmost label."""
    if glob == "*":
        return None
    wildcard = glob.startswith("*.")
    domain = glob[2:] if wildcard else glob
    domain = domain.strip(".").lower()
    if not domain or "*" in domain or any(not label for label in domain.split(".")):
        raise ValueError(f"bad host glob {glob!r} (a * only as the whole leftmost label)")
    try:
        ascii_domain = URL.build(scheme="http", host=domain).raw_host or ""
    except ValueError:
        raise ValueError(f"bad host {domain!r}") from None
    escaped = re.escape(ascii_domain)
    if wildcard:
        return re.compile(rf".+\.{escaped}")
    return re.compile(rf"(?:.+\.)?{escaped}" if subdomains else escaped)


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
