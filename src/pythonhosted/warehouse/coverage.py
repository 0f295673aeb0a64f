"""Data completeness for ``pythonhosted stats --coverage``: which UTC hours are complete.

A log batch's hour is the UTC time its name starts with (the files edge names objects
``downloads-2026-11-25T08-54-09.934-{host}-{pid}-{random}.log.gz``); the result files of a
batch keep that name, so the hours of loaded batches come from ``linehaul_loaded_files``
without any extra bookkeeping. A batch's downloads and simple requests files count once.

The **watermark** ("complete through") is the start of the earliest hour that still has work
in flight: the oldest log object in the log store or result file under ``processed/`` in the
results store. With nothing in flight it is the hour after the latest batch loaded. Hours
from the watermark on are ``pending``. Before it, an hour with no batch loaded is a ``gap``:
this assumes every edge ships at least one batch per hour (its batch period is shorter), so
an hour without one means the edge was down or its logs were lost. Other hours are
``complete``. A day is pending if any of its hours is, else a gap if any hour is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby
from pathlib import Path

import duckdb

from pythonhosted.pipeline import RESULTS, pending, table_of
from pythonhosted.storage import Store
from pythonhosted.storage.stores import Listed
from pythonhosted.warehouse.clickhouse import stats as clickhouse_stats
from pythonhosted.warehouse.clickhouse.engines import Engine
from pythonhosted.warehouse.duck import BATCH_HOUR, BATCH_TIME, LOADED
from pythonhosted.warehouse.stats import EmptyWarehouse, reader

UNITS = ("hour", "day")
HOUR = timedelta(hours=1)
Row = tuple[datetime | date, int, int, int, str]  # hour or day, downloads, simple, batches, status


def _hours(con: duckdb.DuckDBPyConnection) -> str:
    """The bookkeeping's batch hour: its ``batch_hour`` column, or, in a warehouse from before
    the column (not loaded into since), the hour parsed from each name."""
    present = con.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = ? AND column_name = "
        "'batch_hour'",
        [LOADED],
    ).fetchone()
    return "batch_hour" if present is not None else BATCH_HOUR


def _batches(
    con: duckdb.DuckDBPyConnection, first: datetime, stop: datetime
) -> dict[datetime, int]:
    """Distinct batches per batch hour in [first, stop): result names minus directory and
    table prefix, of the hours asked about only (each name's hour is recorded at its load)."""
    rows = con.execute(
        f"SELECT hour, count(DISTINCT regexp_replace(regexp_extract(name, '[^/]*$'), "
        f"'^(downloads|simple)-', '')) FROM (SELECT {_hours(con)} AS hour, name FROM {LOADED}) "
        "WHERE hour >= ? AND hour < ? GROUP BY hour",
        [first, stop],
    ).fetchall()
    return dict(rows)


@dataclass
class Coverage:
    """Rows of (hour or day, downloads, simple requests, batches, status), in time order."""

    by: str
    rows: list[Row]
    watermark: datetime  # naive UTC, like the warehouse's timestamps
    start: date
    end: date


def batch_hour(name: str) -> datetime | None:
    """The UTC hour a batch (log object or result file) started in, from its name."""
    found = re.search(BATCH_TIME, name.rsplit("/", 1)[-1])
    return datetime.strptime(found[1], "%Y-%m-%dT%H") if found else None


def _hour_of(item: Listed) -> datetime:
    """A listed object's batch hour; its modification hour when the name has no time."""
    modified = item.last_modified.astimezone(UTC).replace(tzinfo=None)
    return batch_hour(item.key) or modified.replace(minute=0, second=0, microsecond=0)


async def oldest_in_flight(logs: Store, results: Store) -> datetime | None:
    """The earliest batch hour not loaded yet: log objects to ingest, result files to publish."""
    listed = await logs.list()
    log_keys = set(pending([item.key for item in listed]))
    waiting = [item for item in listed if item.key in log_keys]
    waiting += [item for item in await results.list(RESULTS) if table_of(item.key)]
    return min(map(_hour_of, waiting), default=None)


def _per_hour(
    path: Path, first: datetime, stop: datetime
) -> tuple[dict[datetime, int], dict[datetime, int], dict[datetime, int], datetime]:
    """(downloads, simple requests) per event hour in [first, stop), batches per batch hour
    in it, and the latest batch hour of all."""
    with reader(path, downloads=False) as con:
        counts = []
        for table in ("file_downloads", "simple_requests"):
            sql = (
                f"SELECT date_trunc('hour', \"timestamp\") AS hour, count(*) FROM {table} "
                'WHERE "timestamp" >= ? AND "timestamp" < ? GROUP BY hour'
            )
            counts.append(dict(con.execute(sql, [first, stop]).fetchall()))
        batches = _batches(con, first, stop)
        latest = latest_batch_hour(con)
    if latest is None:
        raise EmptyWarehouse(f"the warehouse at {path} has loaded no log batches yet")
    return counts[0], counts[1], batches, latest


def latest_batch_hour(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The start hour of the latest log batch loaded, if any."""
    found = con.execute(f"SELECT max({_hours(con)}) FROM {LOADED}").fetchone()
    return found[0] if found else None


def coverage(
    source: Path | Engine,
    start: date,
    end: date,
    *,
    now: datetime,
    in_flight: datetime | None,
    by: str,
) -> Coverage:
    """Completeness of the hours (or days, ``by="day"``) from ``start`` to ``end`` inclusive,
    up to the current hour of ``now`` (naive UTC); ``in_flight`` from :func:`oldest_in_flight`.
    ``source``: a DuckDB warehouse file, or an open ClickHouse warehouse.
    """
    if by not in UNITS:
        raise ValueError(f"unknown unit {by!r} (choose from {', '.join(UNITS)})")
    first = datetime.combine(start, time())
    current = now.replace(minute=0, second=0, microsecond=0)
    stop = min(datetime.combine(end + timedelta(days=1), time()), current + HOUR)
    if isinstance(source, Path):
        downloads, simple, batches, latest = _per_hour(source, first, stop)
    else:
        downloads, simple, batches = clickhouse_stats.per_hour(source, first, stop)
        if not batches:
            raise EmptyWarehouse(f"the warehouse at {source.name} has loaded no log batches yet")
        latest = max(batches)
    watermark = in_flight or latest + HOUR
    hours = [first + HOUR * index for index in range(max(0, (stop - first) // HOUR))]
    rows: list[Row] = []
    for hour in hours:
        loaded = batches.get(hour, 0)
        status = "pending" if hour >= watermark else "complete" if loaded else "gap"
        rows.append((hour, downloads.get(hour, 0), simple.get(hour, 0), loaded, status))
    if by == "day":
        rows = [_day(day, list(group)) for day, group in groupby(rows, key=_date_of)]
    return Coverage(by, rows, watermark, start, end)


def _date_of(row: Row) -> date:
    moment = row[0]
    return moment.date() if isinstance(moment, datetime) else moment


def _day(day: date, hours: Iterable[Row]) -> Row:
    """One day's row from its hours: sums, and the worst status (pending, then gap)."""
    rows = list(hours)
    statuses = {row[4] for row in rows}
    status = next(s for s in ("pending", "gap", "complete") if s in statuses)
    return (day, sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows), status)
