"""Varied download events for stats tests: projects, versions, countries, installers
(mirrors among them), Pythons, systems and CI flags, spread over days."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, time, timedelta
from email.utils import formatdate

from pythonhosted.warehouse.mirrors import MIRRORS

SYSTEMS = ["Linux", "Windows", "Darwin", "FreeBSD", None]
PYTHONS = ["3.12.1", "3.11.7", "3.9.18", "2.7.18", None]
COUNTRIES = ["US", "DE", "FR", "JP", "BR"]
MIRROR_AGENTS = {
    "bandersnatch": "bandersnatch/6.5.0 (CPython 3.11.4-final0, Linux x86_64)",
    "devpi": "devpi-server/6.9.2 (py3.11.4; linux)",
    "Artifactory": "Artifactory/7.77.5",
    "Nexus": "Nexus/3.61.0-02 (OSS; Linux; 5.15.0; amd64; 17.0.8)",
    "pep381client": "pep381client/1.5",
    "z3c.pypimirror": "z3c.pypimirror/1.0.16",
}
assert set(MIRROR_AGENTS) == set(MIRRORS)


def pip_agent(python: str | None, system: str | None, ci: bool | None) -> str:
    data: dict[str, object] = {"installer": {"name": "pip", "version": "24.0"}}
    if python is not None:
        data["python"] = python
        data["implementation"] = {"name": "CPython", "version": python}
    if system is not None:
        data["system"] = {"name": system, "release": "1"}
    data["ci"] = ci
    return f"pip/24.0 {json.dumps(data, separators=(',', ':'))}"


def line(
    serial: int,
    when: datetime,
    project: str = "demo",
    version: str = "1.0",
    country: str = "US",
    agent: str | None = None,
) -> str:
    """One download event; its url is unique per ``serial``."""
    stamp = formatdate(when.replace(tzinfo=UTC).timestamp(), usegmt=True)
    name = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
    agent = agent or pip_agent("3.12.1", "Linux", None)
    return (
        f"download|{stamp}|{country}|/packages/{serial:08d}/{name}|TLSv1.3|"
        f"TLS_AES_128_GCM_SHA256|{project}|{version}|bdist_wheel|{agent}"
    )


def random_lines(
    rng: random.Random, count: int, projects: list[str], first: date, days: int, start: int = 0
) -> list[str]:
    """``count`` events over ``days`` days from ``first``; about a tenth from mirrors."""
    out = []
    for serial in range(start, start + count):
        day = first + timedelta(days=rng.randrange(days))
        when = datetime.combine(day, time()) + timedelta(seconds=rng.randrange(86400))
        if rng.random() < 0.1:
            agent = MIRROR_AGENTS[rng.choice(sorted(MIRROR_AGENTS))]
        else:
            ci = rng.choice([None, None, True, False])
            agent = pip_agent(rng.choice(PYTHONS), rng.choice(SYSTEMS), ci)
        out.append(
            line(
                serial,
                when,
                project=rng.choice(projects),
                version=rng.choice(["1.0", "1.1", "2.0"]),
                country=rng.choice(COUNTRIES),
                agent=agent,
            )
        )
    return out
