"""``pythonhosted stats`` on a small known dataset: exact output in every format, errors."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.linehaul.batch import convert
from pythonhosted.warehouse.duck import DuckDBWarehouse
from support.linehaul_data import UV, download_line, gz

DAY2 = 1_610_100_000  # 2021-01-08


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("stats") / "w.duckdb"
    lines = [download_line(n) for n in range(3)]
    lines += [download_line(3, agent=UV, when=DAY2), download_line(4, project="other")]
    converted = convert(gz(lines))
    db = DuckDBWarehouse(path)
    db.load("file_downloads", [("a.json", converted.downloads)])
    db.close()
    return f"duckdb://{path}"


def _stats(warehouse: str, *args: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, ["stats", *args, "--warehouse", warehouse])
    return out.exit_code, out.output


RANGE = ("--start", "2021-01-01", "--end", "2021-01-31")


def test_csv(warehouse: str) -> None:
    code, out = _stats(warehouse, "demo", *RANGE, "--by", "installer,python", "--format", "csv")
    assert code == 0
    assert out == ("installer,python,download_count,percent\npip,3.12,3,75.00%\nuv,3.11,1,25.00%\n")


def test_json(warehouse: str) -> None:
    code, out = _stats(warehouse, "demo", *RANGE, "--by", "day", "--by", "ci", "--format", "json")
    assert code == 0
    assert (
        out
        == """{
  "title": "demo, 2021-01-01 to 2021-01-31",
  "start": "2021-01-01",
  "end": "2021-01-31",
  "by": [
    "day",
    "ci"
  ],
  "total": 4,
  "rows": [
    {
      "day": "2021-01-07",
      "ci": null,
      "download_count": 3,
      "percent": 75.0
    },
    {
      "day": "2021-01-08",
      "ci": true,
      "download_count": 1,
      "percent": 25.0
    }
  ]
}
"""
    )


def test_markdown(warehouse: str) -> None:
    code, out = _stats(warehouse, "--top", "5", *RANGE, "--format", "markdown")
    assert code == 0
    assert out == (
        "top projects, 2021-01-01 to 2021-01-31\n\n"
        "| project | download_count | percent |\n"
        "| --- | ---: | ---: |\n"
        "| demo | 4 | 80.00% |\n"
        "| other | 1 | 20.00% |\n"
        "| Total | 5 | 100.00% |\n"
    )


def test_table(warehouse: str) -> None:
    code, out = _stats(warehouse, "Demo", "--all-time", "--end", "2021-01-31", "--by", "month")
    assert code == 0
    assert out == (
        "     Demo, all time to 2021-01-31     \n"
        "                                      \n"
        "  month     download_count   percent  \n"
        " ──────────────────────────────────── \n"
        "  2021-01                4   100.00%  \n"
        "                                      \n"
        "  Total                  4   100.00%  \n"
        "                                      \n"
    )


def test_no_breakdown_and_no_downloads(warehouse: str) -> None:
    code, out = _stats(warehouse, "demo", *RANGE, "--format", "csv")
    assert (code, out) == (0, "download_count,percent\n4,100.00%\n")
    code, out = _stats(
        warehouse, "demo", "--start", "2020-01-01", "--end", "2020-01-31", "--format", "csv"
    )
    assert (code, out) == (0, "download_count,percent\n")  # a known project, none then
    code, out = _stats(warehouse, "other", *RANGE, "--format", "csv")
    assert (code, out) == (0, "download_count,percent\n1,100.00%\n")


def test_errors(warehouse: str, tmp_path: Path) -> None:
    code, out = _stats(warehouse, "demo", "--by", "colour")
    assert code == 2 and out.startswith("Error: unknown field 'colour'") and out.count("\n") == 1
    code, out = _stats(warehouse, "demo", "--format", "xml")
    assert code == 2 and out.count("\n") == 1
    code, out = _stats(warehouse, "--days", "3", "--start", "2021-01-01", "demo")
    assert code == 2 and out.count("\n") == 1
    code, out = _stats(warehouse)
    assert (code, out) == (2, "Error: give either PROJECT or --top N\n")
    code, out = _stats(f"duckdb://{tmp_path}/missing.duckdb", "demo")
    assert code == 1 and "no warehouse at" in out and out.count("\n") == 1
    DuckDBWarehouse(tmp_path / "empty.duckdb").close()
    code, out = _stats(f"duckdb://{tmp_path}/empty.duckdb", "demo")
    assert code == 1 and "holds no downloads yet" in out and out.count("\n") == 1


def test_days_at_the_ends_of_the_calendar_are_usage_errors(warehouse: str) -> None:
    """A day near Python's date.min or date.max overflowed the range's arithmetic (30 days
    before the end, the day after it): a bare OverflowError, exit status 1."""
    between = "is not between 1900-01-01 and 2199-12-31"
    for args in [
        ("--end", "0001-01-01"),
        ("--by", "version,country", "--end", "9999-12-31"),
        ("--start", "1899-12-31"),
    ]:
        expected = f"Error: {args[-2]}: {args[-1]} {between}\n"
        assert _stats(warehouse, "demo", *args) == (2, expected), args
    code, out = _stats(warehouse, "demo", "--days", "999999999")
    assert code == 2 and "'--days': 999999999 is not in the range" in out


def test_a_warehouse_from_before_rollups(tmp_path: Path) -> None:
    DuckDBWarehouse(tmp_path / "old.duckdb").close()
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute(
        "INSERT INTO file_downloads (timestamp, url, project, file) VALUES "
        "('2021-01-07 20:54:54', '/x', 'demo', {'filename': 'f', 'project': 'demo', "
        "'version': '1', 'type': 'sdist'})"
    )
    for table in (
        "download_rollups",
        "download_rollups_open",
        "project_names",
        "warehouse_version",
    ):
        con.execute(f"DROP TABLE {table}")
    con.close()
    code, out = _stats(f"duckdb://{tmp_path}/old.duckdb", "demo", *RANGE)
    assert (code, out) == (
        1,
        f"Error: the warehouse at {tmp_path}/old.duckdb has no rollups yet (made by an older "
        "release): run 'pythonhosted linehaul rollup --rebuild' or let publish load once\n",
    )
    out = CliRunner().invoke(
        main, ["linehaul", "rollup", "--rebuild", "--warehouse", f"duckdb://{tmp_path}/old.duckdb"]
    )
    assert out.exit_code == 0, out.output
    code, out = _stats(f"duckdb://{tmp_path}/old.duckdb", "demo", *RANGE, "--format", "csv")
    assert (code, out) == (0, "download_count,percent\n1,100.00%\n")
