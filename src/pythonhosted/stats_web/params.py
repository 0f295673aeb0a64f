"""Query parameters read strictly: a bad value is a 400 that names the parameter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qs, urlencode

from pythonhosted.warehouse.stats import UnknownProject, out_of_range


class BadParameter(ValueError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"bad parameter {name!r}: {reason}")
        self.name = name


class NotFound(LookupError):
    """A path no route answers."""


__all__ = ["BadParameter", "NotFound", "Params", "UnknownProject"]


# Every parameter a route reads. Only these can change an answer, so only these make the cache
# key (:meth:`Params.identity`): a cache-buster (``?_=1733390000``) or a link's ``utm_source``
# would otherwise make each request a cold computation and push others' answers out of the
# cache. Reading a name missing here raises, so a new parameter cannot be left out of the key.
NAMES = frozenset(
    {
        "by", "ci", "color", "days", "end", "interval", "label", "limit", "mirrors", "period",
        "os", "projects", "q", "range", "start", "style", "today", "version",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Params:
    values: dict[str, list[str]]

    @classmethod
    def parse(cls, query_string: bytes) -> Params:
        try:
            text = query_string.decode("utf-8")
        except UnicodeDecodeError:
            raise BadParameter("query", "not UTF-8") from None
        return cls(parse_qs(text, keep_blank_values=True))

    def identity(self) -> str:
        """The query as far as it can change an answer: the last value of each parameter in
        :data:`NAMES`, stripped, sorted by name; blank ones are left out, since every reader
        below takes a blank value for an absent one."""
        kept = []
        for name in sorted(self.values.keys() & NAMES):
            value = self.values[name][-1].strip()
            if value:
                kept.append((name, value))
        return urlencode(kept)

    def text(self, name: str) -> str | None:
        if name not in NAMES:
            raise KeyError(f"query parameter {name!r} is not in params.NAMES")
        found = self.values.get(name)
        return found[-1].strip() if found else None

    def choice(self, name: str, choices: Sequence[str], default: str | None = None) -> str | None:
        value = self.text(name)
        if value is None or value == "":
            return default
        if value not in choices:
            raise BadParameter(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.choice(name, ("true", "false"))
        return default if value is None else value == "true"

    def day(self, name: str) -> date | None:
        value = self.text(name)
        if not value:
            return None
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise BadParameter(name, f"must be a date, YYYY-MM-DD, not {value!r}") from None
        if (problem := out_of_range(day)) is not None:
            raise BadParameter(name, problem)
        return day

    def number(self, name: str, default: int, low: int, high: int) -> int:
        value = self.text(name)
        if not value:
            return default
        # ASCII digits only ("²".isdigit() holds), and few of them: int() of a few thousand
        # digits raises rather than answering 400.
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            raise BadParameter(name, f"must be a whole number from {low} to {high}")
        if not low <= int(value) <= high:
            raise BadParameter(name, f"must be a whole number from {low} to {high}")
        return int(value)

    def names(self, name: str, low: int, high: int) -> list[str]:
        """A comma-separated list of ``low`` to ``high`` names, duplicates dropped."""
        value = self.text(name) or ""
        found = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
        if not low <= len(found) <= high:
            raise BadParameter(name, f"give {low} to {high} comma-separated names")
        return found
