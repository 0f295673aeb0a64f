"""Where a project's docs live in the docs store: whole sites behind a pointer.

An upload writes its files under a folder of their own, ``.sites/{project}/{site}/``, and only
once every file is there writes the pointer ``.sites/{project}/current`` (one whole object, so
a reader sees the old pointer or the new one). A reader follows the pointer: it gets the old
site or the new one, never a mix, and a kill at any point leaves the old pointer in place.
Replaced sites stay readable for a grace period (a request that followed the old pointer
still finds its files), then the next upload removes them (:func:`removable`).

Projects without a pointer are served from today's layout, ``{project}/{path}``, which the
first upload of a pointer replaces (and removes after the same grace period).

A site's name is ``v{milliseconds since the epoch}-{random}``: when it was started, so a
folder nobody ever pointed to (an upload killed, or one that lost a race) can be told apart
from one still being written by its age.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

SITES = ".sites"
LEGACY = ""  # the name a replaced site in today's layout has in the pointer's record
POINTER_BYTES = 1 << 20  # a pointer is small; a larger one is not ours


class BadPointer(ValueError):
    """A pointer object that is not one this module wrote."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long (seconds) sites no pointer names are kept: ``replaced`` ones from when they were
    replaced (readers that followed the old pointer), ``unfinished`` ones from when they were
    started (an upload may still be writing it)."""

    replaced: float
    unfinished: float


@dataclass(frozen=True, slots=True)
class Pointer:
    """The site served, and when each site it replaced was replaced (epoch seconds)."""

    site: str
    replaced: Mapping[str, float] = field(default_factory=dict)

    def dump(self) -> bytes:
        return orjson.dumps({"site": self.site, "replaced": dict(self.replaced)})

    def replacing(self, previous: Pointer | None, now: float, existing: Iterable[str]) -> Pointer:
        """This pointer, recording ``previous``'s site (or today's layout) as replaced ``now``;
        records of sites no longer in ``existing`` are dropped."""
        kept = set(existing) | {LEGACY}
        earlier = previous.replaced if previous is not None else {}
        replaced = {name: at for name, at in earlier.items() if name in kept}
        replaced[previous.site if previous is not None else LEGACY] = now
        replaced.pop(self.site, None)
        return Pointer(self.site, replaced)


def load_pointer(data: bytes) -> Pointer:
    try:
        parsed = orjson.loads(data)
        site = parsed["site"]
        replaced = {str(name): float(at) for name, at in parsed.get("replaced", {}).items()}
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError) as exc:
        raise BadPointer(f"not a docs site pointer: {exc}") from None
    if not isinstance(site, str) or started_at(site) is None:
        raise BadPointer(f"not a docs site pointer: site {site!r}")
    return Pointer(site, replaced)


def pointer_key(project: str) -> str:
    return f"{SITES}/{project}/current"


def sites_prefix(project: str) -> str:
    """The folder holding ``project``'s sites (and its pointer)."""
    return f"{SITES}/{project}/"


def site_prefix(project: str, site: str) -> str:
    """Where the files of ``project``'s site ``site`` are; today's layout for LEGACY."""
    return f"{project}/" if site == LEGACY else f"{SITES}/{project}/{site}/"


def new_site(now: float) -> str:
    return f"v{int(now * 1000):013d}-{secrets.token_hex(6)}"


def started_at(site: str) -> float | None:
    """When ``site`` was started (epoch seconds); None when the name is not a site's."""
    stamp, dash, tail = site[1:].partition("-")
    if site[:1] != "v" or not dash or not stamp.isdigit() or not tail:
        return None
    return int(stamp) / 1000


def removable(
    pointer: Pointer, sites: Iterable[str], retention: Retention, now: float
) -> list[str]:
    """The sites among ``sites`` (and LEGACY) past their grace period: never the one served."""
    gone = []
    for site in [*sites, LEGACY]:
        if site == pointer.site:
            continue
        replaced = pointer.replaced.get(site)
        if replaced is not None:
            if now - replaced >= retention.replaced:
                gone.append(site)
        elif site != LEGACY:
            started = started_at(site)
            if started is not None and now - started >= retention.unfinished:
                gone.append(site)
    return gone
