"""The installers that mirror PyPI rather than install from it: one list for every reader.

pypistats.org leaves out downloads by bandersnatch, z3c.pypimirror, Artifactory and devpi
(its ETL's ``MIRRORS``); linehaul also recognises Sonatype Nexus and pep381client, which
copy whole projects the same way. A download whose installer is on this list is a *mirror*
download: the rollups flag it, the stats web excludes it unless asked (pypistats-compatible
``overall`` shows both series), and ``pythonhosted stats`` excludes it by default.

Names are as linehaul's user-agent parser writes ``details.installer.name``
(:mod:`pythonhosted.linehaul.useragents`). Changing the list changes the rollups'
definition, which makes the next publish rebuild them (:mod:`.rollups`).
"""

from __future__ import annotations

MIRRORS: tuple[str, ...] = (
    "bandersnatch",
    "z3c.pypimirror",
    "Artifactory",
    "devpi",
    "Nexus",
    "pep381client",
)


def mirror_sql(installer: str = "details.installer.name") -> str:
    """A SQL expression, true for a mirror's download and false otherwise (never null)."""
    names = ", ".join("'" + name.replace("'", "''") + "'" for name in MIRRORS)
    return f"coalesce({installer} IN ({names}), false)"
