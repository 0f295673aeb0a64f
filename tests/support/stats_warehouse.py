"""A warehouse built from real gzip log batches through ingest and publish, with known
numbers relative to today (UTC), for the stats web's tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from pythonhosted.config import LinehaulSettings, Settings, StatsWebSettings
from pythonhosted.files.upload import upload
from pythonhosted.linehaul.ingest import ingest_once
from pythonhosted.linehaul.publish import publish_with
from pythonhosted.samples import build_wheel
from pythonhosted.storage import open_store
from support.linehaul_data import gz
from support.stats_data import MIRROR_AGENTS, line, pip_agent

TODAY = datetime.now(UTC).date()
YESTERDAY = TODAY - timedelta(days=1)
BUILT_FOR = {"PYTHONHOSTED_STATS_WEB__TODAY": TODAY.isoformat()}
"""The environment of a stats web a test starts from the command line over a warehouse
:func:`build` made: the day its numbers were built for, which a suite that crosses midnight
(UTC) has left by the time the server answers (``stats_web.today``)."""
NO_PREWARM = {"PYTHONHOSTED_STATS_WEB__PREWARM_PROJECTS": "0"}
"""The environment of a stats web a test starts from the command line (``serve``, ``stats-web
serve``) and whose pre-warm it does not test: none, as :func:`build`'s have none. After each
publish (every second in the end-to-end tests) a pre-warm computes the top projects' answers:
CPU spent for nothing on a loaded machine, and answers computed beside those a test counts."""


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour))


def d(days_ago: int) -> date:
    return TODAY - timedelta(days=days_ago)


PIP312_LINUX = pip_agent("3.12.1", "Linux", None)
PIP312_LINUX_CI = pip_agent("3.12.1", "Linux", True)
PIP311_WINDOWS = pip_agent("3.11.7", "Windows", None)
PIP27_DARWIN = pip_agent("2.7.18", "Darwin", None)
PIP_FREEBSD = pip_agent(None, "FreeBSD", None)
# (days ago, project as logged, version, country, agent)
EVENTS: list[tuple[int, str, str, str, str]] = [
    (0, "Demo_Pkg", "1.0", "US", PIP312_LINUX),  # today: partial, not in "recent"
    (1, "Demo_Pkg", "1.0", "US", PIP312_LINUX),
    (1, "demo-pkg", "1.0", "DE", PIP312_LINUX),
    (1, "demo.pkg", "1.1", "US", PIP312_LINUX_CI),
    (1, "demo-pkg", "1.1", "US", MIRROR_AGENTS["bandersnatch"]),
    (2, "demo-pkg", "1.1", "FR", PIP311_WINDOWS),
    (2, "demo-pkg", "1.1", "FR", PIP311_WINDOWS),
    (10, "demo-pkg", "2.0", "JP", PIP27_DARWIN),
    (10, "demo-pkg", "2.0", "JP", MIRROR_AGENTS["devpi"]),
    (40, "demo-pkg", "0.9", "BR", PIP_FREEBSD),
    (1, "other", "3.0", "US", PIP312_LINUX),
    (35, "other", "3.0", "US", PIP312_LINUX),
]


@dataclass
class Warehouse:
    settings: Settings
    path: Path
    logs: str
    results: str


def admitting(settings: Settings, count: int) -> Settings:
    """``settings`` with room for ``count`` cold answers at once (``stats_web.max_pending``):
    for a test whose crowd is about something else than shedding."""
    bound = settings.stats_web.model_copy(update={"max_pending": count})
    return settings.model_copy(update={"stats_web": bound})


def event_lines(today: date = TODAY) -> list[str]:
    """:data:`EVENTS` as log lines, their days counted back from ``today``."""
    return [
        line(serial, at(today - timedelta(days=ago)), project=p, version=v, country=c, agent=a)
        for serial, (ago, p, v, c, a) in enumerate(EVENTS)
    ]


UPLOADS = [  # (project, version, summary): uploaded, so distribution_metadata has them
    ("demo-pkg", "1.0", "Old news"),
    ("Demo_Pkg", "2.0", "The demo package"),
    ("demo-pkg", "2.1rc1", "A pre-release"),  # uploaded last; not the latest release
    ("other", "3.0", ""),  # no Summary
]


def _upload_samples(files: str) -> None:
    store = open_store(files)
    for project, version, about in UPLOADS:
        asyncio.run(upload(store, *build_wheel(project, version, summary=about)))


def build(
    tmp: Path,
    lines: list[str],
    warehouse: str | None = None,
    hour: datetime | None = None,
    **web: object,
) -> Warehouse:
    """Log batches (two objects, named for ``hour``, two hours ago by default) -> ingest ->
    publish into ``warehouse`` (``tmp/warehouse.duckdb`` by default), with the
    distribution_metadata rows of :data:`UPLOADS` (uploaded to ``tmp/files``)."""
    logs, results = f"file://{tmp}/logs", f"file://{tmp}/results"
    store = open_store(logs)
    half = len(lines) // 2
    hour = hour or datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2)
    stamp = hour.strftime("%Y-%m-%dT%H-%M-%S.000")
    for index, part in enumerate((lines[:half], lines[half:])):
        key = f"downloads/x/downloads-{stamp}-host-{index}-abc.log.gz"
        asyncio.run(store.put(key, gz(part)))
    asyncio.run(ingest_once(store, open_store(results), lease_timeout=60))
    warehouse = warehouse or f"duckdb://{tmp}/warehouse.duckdb"
    _upload_samples(f"file://{tmp}/files")
    uploads = open_store(f"file://{tmp}/files")
    asyncio.run(publish_with(open_store(results), warehouse, batch_files=100, uploads=uploads))
    settings = Settings(
        data_dir=tmp,
        linehaul=LinehaulSettings(logs=logs, results=results, warehouse=warehouse),
        # no pre-warm unless asked: it would compute answers a test counts; the numbers are
        # relative to TODAY, which stays today for the app when the suite crosses midnight
        stats_web=StatsWebSettings(**{"prewarm_projects": 0, "today": TODAY, **web}),  # type: ignore[arg-type]
    )
    return Warehouse(settings, tmp / "warehouse.duckdb", logs, results)


def add_batch(
    warehouse: Warehouse,
    serial: int,
    count: int,
    day: date = YESTERDAY,
    batch_hour: datetime = datetime(2026, 1, 1),
    project: str = "demo-pkg",
) -> None:
    """``count`` more downloads of ``project`` on ``day``, as one log batch of
    ``batch_hour`` (an old one by default, so the watermark stays): ingest only."""
    lines = [line(serial + n, at(day, 15), project=project) for n in range(count)]
    stamp = batch_hour.strftime("%Y-%m-%dT%H-%M-%S.000")
    key = f"downloads/y/downloads-{stamp}-host-{serial}-x.log.gz"
    store = open_store(warehouse.logs)
    asyncio.run(store.put(key, gz(lines)))
    asyncio.run(ingest_once(store, open_store(warehouse.results), lease_timeout=60))


def publish(warehouse: Warehouse) -> None:
    url = f"duckdb://{warehouse.path}"
    asyncio.run(publish_with(open_store(warehouse.results), url, batch_files=100))
