"""Allow/deny filter rules by host or path glob (spec rule 14), in go-camo's ruleset format.

One rule a line, ``{allow|deny}|{host|path}|{flags}|{glob}``; ``#`` starts a comment. The only
flag is ``i`` (case-insensitive). When any allow rule exists a URL must match one of them;
a URL matching any deny rule is refused. Hosts are compared lower-case either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Rule:
    action: Literal["allow", "deny"]
    part: Literal["host", "path"]
    glob: str
    ignore_case: bool

    def matches(self, host: str, path: str) -> bool:
        value = host.lower() if self.part == "host" else path
        if self.ignore_case:
            return fnmatchcase(value.lower(), self.glob.lower())
        return fnmatchcase(value, self.glob)


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Rules:
        """Rules from ruleset text; ValueError naming the line for anything malformed."""
        rules = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = [field.strip() for field in line.split("|")]
            if (
                len(fields) != 4
                or fields[0] not in ("allow", "deny")
                or fields[1] not in ("host", "path")
                or fields[2] not in ("", "i")
                or not fields[3]
            ):
                raise ValueError(f"filter rule line {number}: expected allow|host|i|GLOB: {raw!r}")
            action, part, flags, glob = fields
            rules.append(Rule(action, part, glob, flags == "i"))  # type: ignore[arg-type]
        return cls(tuple(rules))

    @classmethod
    def load(cls, path: Path | None) -> Rules:
        return cls() if path is None else cls.parse(path.read_text())

    def refusal(self, host: str, path: str) -> str | None:
        """Why a URL with this host and path is filtered out, or None."""
        if not self.rules:
            return None
        allows = [rule for rule in self.rules if rule.action == "allow"]
        if allows and not any(rule.matches(host, path) for rule in allows):
            return f"{host}{path} matches no allow rule"
        for rule in self.rules:
            if rule.action == "deny" and rule.matches(host, path):
                return f"{rule.part} matches deny rule {rule.glob}"
        return None
