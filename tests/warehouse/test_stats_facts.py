"""``pythonhosted stats`` over our edge's facts and distribution_metadata: what counts as a
download (ranges), ``--by status``, ``--bytes``, ``--by requires-python``, and totals over an
author's, a maintainer's and an org's projects. The warehouse is filled the real way: log
lines through the converter, distribution rows through uploads' queue and publish, into
DuckDB and into ClickHouse (chDB), which must answer every question the same."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.files.upload import upload
from pythonhosted.linehaul.batch import convert
from pythonhosted.linehaul.publish import publish_with
from pythonhosted.pipeline import result_files
from pythonhosted.samples import build_sdist, build_wheel
from pythonhosted.storage import open_store
from support.linehaul_data import gz
from support.stats_data import line

# On one pytest worker, which builds its warehouses (DuckDB, chDB) once.
pytestmark = pytest.mark.xdist_group("stats_facts")

DAY = "2021-01-07"
WHEN = datetime(2021, 1, 7, 12)
# project -> (version, requires-python, more core metadata)
UPLOADS: dict[str, tuple[str, str, list[str]]] = {
    "alpha": ("1.0", ">=3.8", ["Author: Jane Doe", "Maintainer-email: ops@corp.example.com"]),
    "beta": ("1.0", ">=3.10", ["Author-email: Jane Doe <jane@example.org>"]),
    "gamma": (
        "1.0",
        ">=3.8",
        ["Author: Someone Else", "Project-URL: Source, https://github.com/Pallets/gamma"],
    ),
    "delta": (
        "1.0",
        ">=3.9",
        ["Maintainer: Jane Doe", "Home-page: https://www.github.com/pallets"],
    ),
}
# (project, served line or None for a reference line): downloads of the day
EVENTS: list[tuple[str, str | None]] = [
    ("alpha", "served|200|1000|0|0|||||"),  # a whole download
    ("alpha", "served|206|16384|1|90000|||||"),  # uv's tail read: not a download
    ("alpha", "served|206|2000|1|40000|||||"),  # then the METADATA member: not one either
    ("alpha", "served|206|500|1|0|||||"),  # a segmented download's first range: one
    ("alpha", "served|206|600|1|500|||||"),  # its second: not one
    ("alpha", None),  # the reference's line: says nothing, counts
    ("beta", "served|200|7|1|0|||||"),  # a Range answered with the whole file
    ("gamma", "served|200|3|0|0|||||"),
    ("delta", "served|200|4|0|0|||||"),
    ("delta", "served|200|4|0|0|||||"),
]


@pytest.fixture(scope="module", params=["duckdb", "chdb"])
def warehouse(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    tmp = tmp_path_factory.mktemp("facts")
    files = open_store(f"file://{tmp}/files")
    for project, (version, requires, more) in UPLOADS.items():
        maker = build_wheel if project != "beta" else build_sdist
        dist = maker(project, version, requires_python=requires, metadata=more)
        asyncio.run(upload(files, *dist))
    lines: list[str] = []
    for serial, (project, served) in enumerate(EVENTS):
        lines += [served] if served else []
        text = line(serial, WHEN, project=project)
        if project == "beta":  # its file is an sdist
            text = text.replace("beta-1.0-py3-none-any.whl", "beta-1.0.tar.gz")
        lines.append(text)
    results = open_store(f"file://{tmp}/results")
    downloads = convert(gz(lines)).downloads
    asyncio.run(results.put(result_files("x", DAY.replace("-", ""), 1)[0], downloads))
    url = f"duckdb://{tmp}/w.duckdb" if request.param == "duckdb" else f"chdb://{tmp}/ch"
    summary = asyncio.run(publish_with(results, url, batch_files=10, uploads=files))
    assert (summary.rows, summary.distributions) == (len(EVENTS), len(UPLOADS))
    return url


def _json(warehouse: str, *args: str) -> dict[str, Any]:
    out = CliRunner().invoke(
        main,
        [
            "stats",
            *args,
            "--start",
            DAY,
            "--end",
            DAY,
            "--format",
            "json",
            "--warehouse",
            warehouse,
        ],
    )
    assert out.exit_code == 0, out.output
    document: dict[str, Any] = json.loads(out.stdout)
    return document


def _counts(document: dict[str, Any]) -> dict[Any, int]:
    field = document["by"][-1] if document["by"] else None
    return {row[field] if field else "total": row["download_count"] for row in document["rows"]}


def test_ranges_count_once_from_byte_0(warehouse: str) -> None:
    """alpha's six responses are three downloads: the whole file, the segmented download
    (its range from byte 0), and the reference line; the metadata reads do not count."""
    assert _json(warehouse, "alpha")["total"] == 3
    assert _counts(_json(warehouse, "alpha", "--by", "status")) == {200: 1, 206: 1, None: 1}
    assert _json(warehouse, "--top", "10")["total"] == 7  # the rollups count the same


def test_bytes_served_per_day(warehouse: str) -> None:
    """--bytes: every response's bytes (the ranges that are not downloads too), per day when
    nothing else is asked; reference rows add nothing."""
    document = _json(warehouse, "alpha", "--bytes")
    assert document["by"] == ["day"]
    assert document["rows"] == [
        {
            "day": DAY,
            "download_count": 3,
            "percent": 100.0,
            "bytes_sent": 1000 + 16384 + 2000 + 500 + 600,
        }
    ]
    assert document["total_bytes"] == 20484
    by_status = _json(warehouse, "alpha", "--by", "status", "--bytes")["rows"]
    assert [(r["status"], r["download_count"], r["bytes_sent"]) for r in by_status] == [
        (200, 1, 1000),
        (206, 1, 16384 + 2000 + 500 + 600),
        (None, 1, 0),
    ]
    table = CliRunner().invoke(
        main, ["stats", "alpha", "--bytes", "--start", DAY, "--end", DAY, "--warehouse", warehouse]
    )
    assert "bytes_sent" in table.stdout and "20484" in table.stdout


def test_by_requires_python(warehouse: str) -> None:
    """The downloaded file's Requires-Python, from distribution_metadata."""
    rows = _json(warehouse, "--top", "10", "--by", "requires-python")["rows"]
    assert sorted((r["project"], r["requires-python"], r["download_count"]) for r in rows) == [
        ("alpha", ">=3.8", 3),
        ("beta", ">=3.10", 1),
        ("delta", ">=3.9", 2),
        ("gamma", ">=3.8", 1),
    ]


@pytest.mark.parametrize(
    ("option", "value", "projects", "total"),
    [
        ("--author", "jane doe", ["alpha", "beta"], 4),  # Author, or a name in Author-email
        ("--author", "JANE@example.org", ["beta"], 1),  # an address
        ("--maintainer", "Jane Doe", ["delta"], 2),
        ("--org", "example.com", ["alpha"], 3),  # a domain, subdomains included
        ("--org", "github.com/pallets", ["delta", "gamma"], 3),  # a code host's owner
    ],
)
def test_totals_over_a_group(
    warehouse: str, option: str, value: str, projects: list[str], total: int
) -> None:
    document = _json(warehouse, option, value, "--by", "project")
    assert document["total"] == total
    assert sorted(row["project"] for row in document["rows"]) == projects
    count = f"{len(projects)} project{'s' if len(projects) > 1 else ''}"
    assert document["title"] == f"{option[2:]} {value} ({count}), {DAY} to {DAY}"
    top = _json(warehouse, option, value, "--top", "1")
    assert len(top["rows"]) == 1 and top["rows"][0]["project"] in projects


def test_group_errors(warehouse: str, tmp_path: Path) -> None:
    def run(*args: str) -> tuple[int, str]:
        out = CliRunner().invoke(main, ["stats", *args, "--warehouse", warehouse])
        return out.exit_code, out.stderr

    assert run("--author", "nobody") == (
        1,
        "Error: no uploaded file's metadata names author nobody (distribution_metadata)\n",
    )
    assert run("alpha", "--author", "x") == (
        2,
        "Error: --author totals several projects: give no PROJECT\n",
    )
    assert run("--author", "x", "--org", "y") == (
        2,
        "Error: give only one of --author, --maintainer and --org\n",
    )
    assert run("--coverage", "--bytes")[0] == 2
