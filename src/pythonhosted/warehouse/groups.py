"""Groups of projects from ``distribution_metadata``: an author's, a maintainer's, an org's.

``pythonhosted stats --author/--maintainer/--org`` totals downloads over such a group
(pypistats.org#19). A project belongs to a group when the core metadata of any file uploaded
for it says so (every release counts, not only the latest):

- **author** NAME: the ``Author`` field is NAME, or ``Author-email`` holds NAME as a name or
  an address (``Jane Doe <jane@example.org>``, as PEP 621 tools write it);
- **maintainer** NAME: the same with ``Maintainer`` and ``Maintainer-email``;
- **org**: core metadata has no organisation field, so an org is read from what names one
  reliably. ``--org example.org`` is an e-mail domain: an author or maintainer address at
  it or below it (``jane@dev.example.org``). ``--org github.com/pallets`` (a host and a first
  path segment) is a code host's owner: a project URL (PEP 753's labelled ``Project-URL``s,
  ``Home-page``, ``Download-URL``) at that host whose path starts with that owner.

Names and addresses compare without regard to case or surrounding blanks. The table is small
(a row per uploaded file), so matching happens here, in Python, over its distinct values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Any, Literal
from urllib.parse import urlsplit

import duckdb
from packaging.utils import canonicalize_name

Role = Literal["author", "maintainer", "org"]


@dataclass(frozen=True)
class Group:
    role: Role
    value: str

    def describe(self) -> str:
        return f"{self.role} {self.value}"


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _people(name: str | None, emails: str | None) -> set[str]:
    """Every name and address a Name/Name-email pair holds, folded."""
    found = {_fold(name)} if name and name.strip() else set()
    for display, address in getaddresses([emails or ""]):
        found.update(_fold(part) for part in (display, address) if part.strip())
    return found


def _domains(*emails: str | None) -> set[str]:
    found = set()
    for _, address in getaddresses([text or "" for text in emails]):
        domain = address.rpartition("@")[2].strip().casefold()
        if "@" in address and domain:
            found.add(domain)
    return found


def _owners(urls: list[str]) -> set[str]:
    """``host/owner`` of each URL (``www.`` dropped), folded."""
    found = set()
    for url in urls:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").removeprefix("www.")
        owner = parts.path.strip("/").split("/", 1)[0]
        if host and owner:
            found.add(f"{host}/{owner}".casefold())
    return found


@dataclass(frozen=True)
class _Who:
    """What one file's core metadata says about its people and places."""

    name: str
    author: str | None
    author_email: str | None
    maintainer: str | None
    maintainer_email: str | None
    urls: list[str]  # home page, download URL, each Project-URL's URL


def _matches(group: Group, who: _Who) -> bool:
    wanted = _fold(group.value)
    if group.role == "author":
        return wanted in _people(who.author, who.author_email)
    if group.role == "maintainer":
        return wanted in _people(who.maintainer, who.maintainer_email)
    if "/" in wanted:
        return wanted.strip("/") in _owners(who.urls)
    domains = _domains(who.author_email, who.maintainer_email)
    return any(domain == wanted or domain.endswith("." + wanted) for domain in domains)


FACTS_SQL = (
    "SELECT DISTINCT name, author, author_email, maintainer, maintainer_email, home_page, "
    "download_url, project_urls FROM distribution_metadata"
)
"""What a group is read from, in SQL that DuckDB and ClickHouse both take."""


def group_projects(con: duckdb.DuckDBPyConnection, group: Group) -> list[str]:
    """The normalised names of the group's projects, sorted."""
    return members(group, con.execute(FACTS_SQL).fetchall())


def members(group: Group, rows: Iterable[Sequence[Any]]) -> list[str]:
    """The normalised names of the group's projects among the rows of :data:`FACTS_SQL`,
    however a warehouse answered it; sorted."""
    found = set()
    for name, author, author_email, maintainer, maintainer_email, home, download, labelled in rows:
        urls = [url for url in (home, download) if url]
        urls += [item.partition(",")[2] for item in labelled]  # "Label, URL"
        who = _Who(name, author, author_email, maintainer, maintainer_email, urls)
        if _matches(group, who):
            found.add(canonicalize_name(name))
    return sorted(found)
