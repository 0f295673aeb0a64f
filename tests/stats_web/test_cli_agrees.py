"""``pythonhosted stats`` and the stats web give the same numbers for the same question;
the CLI's day ranges, several --by fields and its messages for the wrong place or name."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from support.stats_warehouse import Warehouse, d


def _cli(warehouse: Warehouse, *args: str) -> dict[str, object]:
    out = CliRunner().invoke(
        main, ["stats", *args, "--format", "json", "--warehouse", f"duckdb://{warehouse.path}"]
    )
    assert out.exit_code == 0, out.output
    document: dict[str, object] = json.loads(out.stdout)
    return document


def _api_totals(base: str, by: str, query: str) -> dict[object, int]:
    answer = httpx.get(f"{base}/api/v1/projects/demo-pkg/downloads?by={by}&{query}").json()
    totals: dict[object, int] = {}
    for row in answer["rows"]:
        totals[row[by]] = totals.get(row[by], 0) + row["downloads"]
    assert sum(totals.values()) == answer["total"]
    return totals


@pytest.mark.parametrize("by", ["installer", "python", "system", "country", "version", "cpu"])
@pytest.mark.parametrize(
    ("flags", "query"),
    [
        ([], "mirrors=false&ci=true"),
        (["--include-mirrors"], "mirrors=true&ci=true"),
        (["--exclude-ci"], "mirrors=false&ci=false"),
        (["--include-mirrors", "--exclude-ci"], "mirrors=true&ci=false"),
    ],
)
def test_cli_and_api_agree(
    warehouse: Warehouse, base: str, by: str, flags: list[str], query: str
) -> None:
    start, end = d(45).isoformat(), d(1).isoformat()
    cli = _cli(warehouse, "Demo.Pkg", "--by", by, "--start", start, "--end", end, *flags)
    rows = cli["rows"]
    assert isinstance(rows, list)
    from_cli = {row[by]: row["download_count"] for row in rows}
    assert from_cli == _api_totals(base, by, f"start={start}&end={end}&{query}")
    assert sum(from_cli.values()) == cli["total"]


def test_days_are_complete_days_as_pypistats_counts(warehouse: Warehouse, base: str) -> None:
    recent = httpx.get(f"{base}/api/packages/demo-pkg/recent").json()["data"]
    for days, key in ((1, "last_day"), (7, "last_week"), (30, "last_month")):
        # The web counts back from the day the warehouse was built for (stats_web.today),
        # so the CLI is asked for the days ending there: the clock may have passed midnight.
        cli = _cli(warehouse, "demo-pkg", "--days", str(days), "--end", d(1).isoformat())
        assert cli["total"] == recent[key], days
        assert cli["start"] == d(days).isoformat()
    for flags, days in (([], 30), (["--days", "7"], 7)):  # without --end: up to yesterday
        before = datetime.now(UTC).date()
        cli = _cli(warehouse, "demo-pkg", *flags)
        after = datetime.now(UTC).date()
        assert cli["end"] in {(day - timedelta(days=1)).isoformat() for day in (before, after)}
        last = date.fromisoformat(str(cli["end"]))
        assert cli["start"] == (last - timedelta(days=days - 1)).isoformat()
    today = _cli(warehouse, "demo-pkg", "--start", d(0).isoformat(), "--end", d(0).isoformat())
    assert today["total"] == 1  # today only when asked for


def test_by_takes_several_fields(warehouse: Warehouse) -> None:
    cli = _cli(warehouse, "demo-pkg", "--days", "7", "--by", "installer", "python")
    assert cli["by"] == ["installer", "python"]
    assert cli["rows"] == [
        {"installer": "pip", "python": "3.12", "download_count": 3, "percent": 60.0},
        {"installer": "pip", "python": "3.11", "download_count": 2, "percent": 40.0},
    ]
    # A word after --by that is no field is PROJECT.
    out = CliRunner().invoke(
        main,
        ["stats", "--by", "installer", "system", "demo-pkg", "--days", "7", "--format", "csv",
         "--warehouse", f"duckdb://{warehouse.path}"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert out.stdout == (
        "installer,system,download_count,percent\npip,Linux,3,60.00%\npip,Windows,2,40.00%\n"
    )


def test_unknown_projects_are_named_with_close_names(warehouse: Warehouse) -> None:
    url = f"duckdb://{warehouse.path}"
    out = CliRunner().invoke(main, ["stats", "nosuchproject", "--warehouse", url])
    assert (out.exit_code, out.output) == (
        1,
        "Error: no downloads were recorded for 'nosuchproject'\n",
    )
    out = CliRunner().invoke(main, ["stats", "demo-pk", "--warehouse", url])
    assert (out.exit_code, out.output) == (
        1,
        "Error: no downloads were recorded for 'demo-pk' (did you mean demo-pkg?)\n",
    )


def test_another_directory_names_the_path_and_how_to_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in (
        "PYTHONHOSTED_DATA_DIR",
        "PYTHONHOSTED_LINEHAUL__WAREHOUSE",
        "PYTHONHOSTED_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    out = CliRunner().invoke(main, ["stats", "demo"])
    assert out.exit_code == 1
    assert out.output == (
        f"Error: no warehouse at {tmp_path}/var/warehouse.duckdb (the default under the data "
        "dir 'var', relative to this directory; run from the directory 'pythonhosted serve' "
        "ran in, set PYTHONHOSTED_DATA_DIR, or give --warehouse "
        "duckdb:///PATH/warehouse.duckdb)\n"
    )
    out = CliRunner().invoke(main, ["stats", "demo", "--warehouse", "duckdb:///nowhere/w.duckdb"])
    assert out.output == "Error: no warehouse at /nowhere/w.duckdb (from --warehouse)\n"
