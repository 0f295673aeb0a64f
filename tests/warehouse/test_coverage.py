"""``pythonhosted stats --coverage``: batches through real ingest and publish into a real
DuckDB file, work left in flight in local stores, exact statuses and watermark."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.linehaul.batch import convert
from pythonhosted.linehaul.ingest import ingest_once
from pythonhosted.linehaul.publish import publish_with
from pythonhosted.storage import open_store
from pythonhosted.warehouse.coverage import coverage
from pythonhosted.warehouse.duck import LOADED, DuckDBWarehouse
from support.linehaul_data import download_line, gz, simple_line


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2021, 1, day, hour, minute, tzinfo=UTC)


def _key(kind: str, moment: datetime, host: str = "h1") -> str:
    """A log object key as the files edge writes it."""
    folder = moment.strftime("%Y/%m/%d/%H/%M")
    return f"{kind}/{folder}/{kind}-{moment:%Y-%m-%dT%H-%M-%S}.000-{host}-7-abc.log.gz"


def _stamp(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """2021-01-07: a batch every hour. 2021-01-08: batches at 00 (a downloads and a simple
    object), 02 (one object with both) and 04; none at 01 (a gap). In flight: a result file
    of 03 and a log object of 05. A corrupt object (moved aside) and an unprocessed file from
    01 do not hold the watermark back."""
    root = tmp_path_factory.mktemp("coverage")
    urls = {
        "logs": f"file://{root}/logs",
        "results": f"file://{root}/results",
        "warehouse": f"duckdb://{root}/w.duckdb",
    }
    logs, results = open_store(urls["logs"]), open_store(urls["results"])
    serials = iter(range(1000))
    batches: dict[str, list[str]] = {}
    for hour in range(24):
        moment = _at(7, hour, 5)
        batches[_key("downloads", moment)] = [download_line(next(serials), when=_stamp(moment))]
    batches[_key("downloads", _at(8, 0, 10))] = [
        download_line(next(serials), when=_stamp(_at(8, 0, 10 + n))) for n in range(2)
    ]
    batches[_key("simple", _at(8, 0, 20))] = [simple_line(1, when=_stamp(_at(8, 0, 20)))]
    mixed = _at(8, 2, 30)
    batches[_key("downloads", mixed)] = [
        download_line(next(serials), when=_stamp(mixed)),
        simple_line(2, when=_stamp(mixed)),
    ]
    batches[_key("downloads", _at(8, 4))] = [download_line(next(serials), when=_stamp(_at(8, 4)))]

    async def build() -> None:
        for key, lines in batches.items():
            await logs.put(key, gz(lines))
        await logs.put(_key("downloads", _at(8, 1), host="broken"), b"not gzip")
        await ingest_once(logs, results, lease_timeout=60)
        await publish_with(results, urls["warehouse"], batch_files=1000)
        late = _at(8, 3)
        rows = convert(gz([download_line(next(serials), when=_stamp(late))])).downloads
        name = _key("downloads", late).rsplit("/", 1)[-1].removesuffix(".log.gz")
        await results.put(f"processed/20210108/downloads-{name}.json", rows)
        await results.put("unprocessed/20210108/downloads-2021-01-08T01-00-00.000-h-1-a.txt", b"x")
        await logs.put(_key("downloads", _at(8, 5)), gz([download_line(next(serials))]))

    asyncio.run(build())
    return urls


def _coverage(site: dict[str, str], *args: str) -> tuple[int, str]:
    options = [f"--{name}={url}" for name, url in site.items()]
    out = CliRunner().invoke(main, ["stats", "--coverage", *args, *options])
    return out.exit_code, out.output


def _hour(hour: int, counts: tuple[int, int, int], status: str) -> dict[str, object]:
    downloads, simple, batches = counts
    return {
        "hour": f"2021-01-08T{hour:02d}:00Z",
        "downloads": downloads,
        "simple_requests": simple,
        "batches": batches,
        "status": status,
    }


def test_hours_json(site: dict[str, str]) -> None:
    code, out = _coverage(site, "--start", "2021-01-08", "--end", "2021-01-08", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document == {
        "title": "coverage, 2021-01-08 to 2021-01-08, complete through 2021-01-08T03:00Z",
        "start": "2021-01-08",
        "end": "2021-01-08",
        "by": "hour",
        "watermark": "2021-01-08T03:00Z",
        "rows": [
            _hour(0, (2, 1, 2), "complete"),
            _hour(1, (0, 0, 0), "gap"),
            _hour(2, (1, 1, 1), "complete"),
            _hour(3, (0, 0, 0), "pending"),
            _hour(4, (1, 0, 1), "pending"),
            *(_hour(hour, (0, 0, 0), "pending") for hour in range(5, 24)),
        ],
    }
    assert out.startswith('{\n  "title": "coverage, 2021-01-08 to 2021-01-08, complete')


def test_watermark_without_work_in_flight(site: dict[str, str], tmp_path: Path) -> None:
    """Empty stores: the watermark is the hour after the latest batch loaded."""
    empty = {**site, "logs": f"file://{tmp_path}/l", "results": f"file://{tmp_path}/r"}
    code, out = _coverage(empty, "--start", "2021-01-08", "--end", "2021-01-08", "--format", "csv")
    assert code == 0
    assert out.splitlines()[:7] == [
        "hour,downloads,simple_requests,batches,status",
        "2021-01-08T00:00Z,2,1,2,complete",
        "2021-01-08T01:00Z,0,0,0,gap",
        "2021-01-08T02:00Z,1,1,1,complete",
        "2021-01-08T03:00Z,0,0,0,gap",
        "2021-01-08T04:00Z,1,0,1,complete",
        "2021-01-08T05:00Z,0,0,0,pending",
    ]


def test_days_markdown(site: dict[str, str]) -> None:
    code, out = _coverage(
        site, "--start", "2021-01-06", "--end", "2021-01-08", "--by", "day", "--format", "markdown"
    )
    assert code == 0
    assert out == (
        "coverage, 2021-01-06 to 2021-01-08, complete through 2021-01-08T03:00Z\n\n"
        "| day | downloads | simple_requests | batches | status |\n"
        "| --- | ---: | ---: | ---: | --- |\n"
        "| 2021-01-06 | 0 | 0 | 0 | gap |\n"
        "| 2021-01-07 | 24 | 0 | 24 | complete |\n"
        "| 2021-01-08 | 4 | 2 | 4 | pending |\n"
        "| Total | 28 | 2 | 28 |  |\n"
    )


def test_days_table(site: dict[str, str]) -> None:
    code, out = _coverage(site, "--start", "2021-01-07", "--end", "2021-01-08", "--by", "day")
    assert code == 0
    assert out == (
        "      coverage, 2021-01-07 to 2021-01-08, complete through       \n"
        "                        2021-01-08T03:00Z                        \n"
        "                                                                 \n"
        "  day          downloads   simple_requests   batches   status    \n"
        " ─────────────────────────────────────────────────────────────── \n"
        "  2021-01-07          24                 0        24   complete  \n"
        "  2021-01-08           4                 2         4   pending   \n"
        "                                                                 \n"
        "  Total               28                 2        28             \n"
        "                                                                 \n"
    )


def test_rows_stop_at_the_current_hour(site: dict[str, str]) -> None:
    path = Path(site["warehouse"].removeprefix("duckdb://"))
    now = datetime(2021, 1, 8, 5, 30)
    result = coverage(path, date(2021, 1, 8), date(2021, 1, 9), now=now, in_flight=None, by="hour")
    assert [(row[0], row[4]) for row in result.rows[-2:]] == [
        (datetime(2021, 1, 8, 4), "complete"),
        (datetime(2021, 1, 8, 5), "pending"),
    ]


def test_errors(site: dict[str, str], tmp_path: Path) -> None:
    for args in (["demo"], ["--top", "3"], ["--all-time"], ["--by", "installer"]):
        code, out = _coverage(site, *args)
        assert code == 2 and out.startswith("Error: --coverage") and out.count("\n") == 1
    out = CliRunner().invoke(main, ["stats", "demo", "--logs", "file:///x"])
    assert (out.exit_code, out.output) == (2, "Error: --logs and --results go with --coverage\n")
    missing = {**site, "warehouse": f"duckdb://{tmp_path}/missing.duckdb"}
    code, out = _coverage(missing)
    assert code == 1 and "no warehouse at" in out and out.count("\n") == 1
    DuckDBWarehouse(tmp_path / "empty.duckdb").close()
    empty = {**site, "warehouse": f"duckdb://{tmp_path}/empty.duckdb"}
    code, out = _coverage(empty)
    assert code == 1 and "has loaded no log batches yet" in out and out.count("\n") == 1


def _batch_hours(path: Path) -> list[tuple[datetime | None, int]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            f"SELECT batch_hour, count(*) FROM {LOADED} GROUP BY ALL ORDER BY batch_hour"
        ).fetchall()
    finally:
        con.close()
    return [(hour, int(count)) for hour, count in rows]


# The site's batches: one file each for the 24 hours of 2021-01-07; at 00 of the 8th two
# objects, at 02 one object with a file per table, at 04 one.
SITE_HOURS = [
    *((datetime(2021, 1, 7, hour), 1) for hour in range(24)),
    (datetime(2021, 1, 8, 0), 2),
    (datetime(2021, 1, 8, 2), 2),
    (datetime(2021, 1, 8, 4), 1),
]


def test_each_batchs_hour_is_recorded_at_its_load(site: dict[str, str]) -> None:
    """Coverage and the watermark read the hours asked about (and the latest) from a column
    filled at each load, instead of parsing every name ever loaded (a regular expression per
    bookkeeping row: seconds per question after three years of batches)."""
    assert _batch_hours(Path(site["warehouse"].removeprefix("duckdb://"))) == SITE_HOURS


def test_a_warehouse_from_before_the_batch_hours_gets_them(
    site: dict[str, str], tmp_path: Path
) -> None:
    """Without the column (an older release's warehouse) coverage parses the names as
    before; opened for loading, the warehouse records every batch's hour."""
    old = tmp_path / "old.duckdb"
    shutil.copy(site["warehouse"].removeprefix("duckdb://"), old)
    con = duckdb.connect(str(old))
    con.execute(f"CREATE TABLE before AS SELECT name, table_name, rows, loaded_at FROM {LOADED}")
    con.execute(f"DROP TABLE {LOADED}")
    con.execute(f"ALTER TABLE before RENAME TO {LOADED}")
    con.close()
    expected = _coverage(site, "--start", "2021-01-08", "--end", "2021-01-08", "--format", "csv")
    older = {**site, "warehouse": f"duckdb://{old}"}
    asked = ("--start", "2021-01-08", "--end", "2021-01-08", "--format", "csv")
    assert _coverage(older, *asked) == expected
    DuckDBWarehouse(old).close()
    assert _batch_hours(old) == SITE_HOURS
    assert _coverage(older, *asked) == expected
