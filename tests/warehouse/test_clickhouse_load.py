"""The ClickHouse warehouse on chDB (ClickHouse's engine in process), for real: tables from
the schema, each file loaded once, a crash between insert and bookkeeping, the rollups'
materialized views against DuckDB's rollups of the same files, and kill -9 in a loop."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.linehaul.batch import convert
from pythonhosted.warehouse import LocalFile, WarehouseError, open_warehouse
from pythonhosted.warehouse import rollups as duck_rollups
from pythonhosted.warehouse.clickhouse import tables
from pythonhosted.warehouse.clickhouse.engines import ChdbEngine, ServerAddress
from pythonhosted.warehouse.clickhouse.load import ClickHouseWarehouse, insert_sql
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.schema import TABLES, Field
from pythonhosted.web.server import free_port
from support.clickhouse import KINDS, adapter
from support.distribution_rows import METADATA, distribution_row
from support.linehaul_data import gz
from support.processes import spawn
from support.stats_data import random_lines

REAL = " WHERE dimension != '~insert'"  # the rollups, without inserts' markers (tables.MARKER)
PROJECTS = ["Demo_Pkg", "demo-pkg", "demo.pkg", "alpha", "beta", "zope.interface"]
ROW = (
    b'{"timestamp":"2021-01-07 20:54:54 +00:00","url":"/a","project":"p",'
    b'"file":{"filename":"a","project":"p","version":"1","type":"sdist"},'
    b'"details":null,"unknown":{"x":1}}\n'
)


@pytest.fixture(params=KINDS)
def warehouse(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ClickHouseWarehouse]:
    """The warehouse on chDB through each adapter: ``chdb://``'s, and the network path's
    (support/clickhouse.py)."""
    opened = ClickHouseWarehouse(adapter(request.param, tmp_path / "ch"))
    try:
        yield opened
    finally:
        opened.close()


def _scalar(warehouse: ClickHouseWarehouse, sql: str) -> object:
    ((value,),) = warehouse.engine.rows(sql)
    return value


def test_each_file_is_loaded_once(warehouse: ClickHouseWarehouse) -> None:
    name = "processed/20210107/downloads-a.json"
    first = warehouse.load("file_downloads", [(name, ROW * 3)])
    assert (first.rows, first.loaded, first.skipped) == (3, [name], [])
    again = warehouse.load("file_downloads", [(name, ROW * 3)])
    assert (again.rows, again.loaded, again.skipped) == (0, [], [name])
    assert _scalar(warehouse, "SELECT count() FROM file_downloads") == 3
    assert warehouse.engine.rows("SELECT name, table_name, rows FROM linehaul_loaded_files") == [
        (name, "file_downloads", 3)
    ]
    # unknown keys are ignored; a null record is a record of nulls (see tables.py)
    assert warehouse.engine.rows(
        "SELECT timestamp, url, project, file.version, details.installer.name, details.ci "
        "FROM file_downloads LIMIT 1"
    ) == [(datetime(2021, 1, 7, 20, 54, 54), "/a", "p", "1", None, None)]


def test_a_crash_between_insert_and_bookkeeping_loads_the_file_once(
    warehouse: ClickHouseWarehouse,
) -> None:
    """The rows (and the rollups' view) went in, the bookkeeping did not: the retry's insert
    carries the same token, so the rows and the rollups are there once, and it is booked."""
    name = "processed/20210107/downloads-a.json"
    warehouse.engine.insert(insert_sql("file_downloads", name), ROW * 5)
    retried = warehouse.load("file_downloads", [(name, ROW * 5)])
    assert (retried.rows, retried.loaded) == (5, [name])
    assert _scalar(warehouse, "SELECT count() FROM file_downloads") == 5
    assert (
        _scalar(warehouse, "SELECT sum(downloads) FROM download_rollups WHERE dimension = ''") == 5
    )
    assert warehouse.load("file_downloads", [(name, ROW * 5)]).skipped == [name]


def test_a_crash_after_the_rows_before_the_rollups_is_mended_by_the_retry(
    warehouse: ClickHouseWarehouse,
) -> None:
    """The rows' part committed without the view's (the view is away while they go in):
    the retry's rows are dropped as a duplicate, the view takes them, once."""
    name = "processed/20210107/downloads-a.json"
    engine = warehouse.engine
    engine.command("DROP VIEW download_rollups_mv")
    engine.insert(insert_sql("file_downloads", name), ROW * 4)
    for statement in tables.views_sql():
        engine.command(statement)
    assert _scalar(warehouse, "SELECT count() FROM download_rollups") == 0
    warehouse.load("file_downloads", [(name, ROW * 4)])
    warehouse.load("file_downloads", [(name, ROW * 4)])
    assert _scalar(warehouse, "SELECT count() FROM file_downloads") == 4
    assert _scalar(warehouse, f"SELECT sum(downloads) FROM download_rollups{REAL}") == 4 * 6


def _lose_parts(path: Path, table: str) -> None:
    """What a kill between ClickHouse's deduplication log and its part's rename leaves: the
    tokens logged, the parts gone (a part not yet renamed is a temporary directory, removed
    at the next start). The warehouse at ``path`` is closed."""
    engine = ChdbEngine(path)
    try:
        parts = engine.rows(f"SELECT path FROM system.parts WHERE active AND table = '{table}'")
    finally:
        engine.close()
    assert parts
    for (part,) in parts:
        shutil.rmtree(part)


def test_a_kill_between_the_token_and_the_rows_part_loses_nothing(tmp_path: Path) -> None:
    """The rows' token logged but not their part, and the views not run (they come after
    the rows): the retry's insert is dropped as a duplicate while the views take it, so the
    file's rows are missing; the load finds that and inserts the rows alone (it lost them)."""
    name = "processed/20210107/downloads-a.json"
    house = ClickHouseWarehouse(ChdbEngine(tmp_path / "ch"))
    house.engine.command("DROP VIEW download_rollups_mv")
    house.engine.command("DROP VIEW project_names_mv")
    house.engine.insert(insert_sql("file_downloads", name), ROW * 4)
    house.close()
    _lose_parts(tmp_path / "ch", "file_downloads")
    house = ClickHouseWarehouse(ChdbEngine(tmp_path / "ch"))
    try:
        for _ in range(2):
            house.load("file_downloads", [(name, ROW * 4)])
        assert _scalar(house, "SELECT count() FROM file_downloads") == 4
        assert _scalar(house, f"SELECT sum(downloads) FROM download_rollups{REAL}") == 4 * 6
        assert house.engine.rows("SELECT name FROM project_names") == [("p",)]
    finally:
        house.close()


def test_a_kill_between_the_token_and_the_rollups_part_loses_nothing(tmp_path: Path) -> None:
    """The rows in, the rollups' token logged but not their part: the retry's view is
    dropped as a duplicate (it lost them); the load finds the insert's marker missing and
    computes the rollups from the file's rows, once, also when asked again."""
    name = "processed/20210107/downloads-a.json"
    house = ClickHouseWarehouse(ChdbEngine(tmp_path / "ch"))
    house.engine.insert(insert_sql("file_downloads", name), ROW * 4)
    house.engine.insert(insert_sql("file_downloads", "other"), ROW * 2)
    house.close()
    _lose_parts(tmp_path / "ch", tables.ROLLUPS)
    house = ClickHouseWarehouse(ChdbEngine(tmp_path / "ch"))
    try:
        house.engine.command(f"SYSTEM STOP MERGES {tables.ROLLUPS}")  # to count the parts
        for _ in range(2):
            house.load("file_downloads", [(name, ROW * 4), ("other", ROW * 2)])
        assert _scalar(house, "SELECT count() FROM file_downloads") == 6
        assert house.engine.rows(
            f"SELECT dimension, sum(downloads) FROM download_rollups{REAL} "
            "GROUP BY dimension ORDER BY dimension"
        ) == [
            (dimension, 6)
            for dimension in ("", "country", "installer", "python", "system", "version")
        ]
        assert (
            _scalar(
                house,
                "SELECT count() FROM system.parts WHERE active AND table = 'download_rollups'",
            )
            == 2
        )
    finally:
        house.close()


def test_a_file_becomes_one_part(warehouse: ClickHouseWarehouse) -> None:
    """One file, one block, one part: what makes a token stand for the whole file."""
    rng = random.Random(3)
    lines = random_lines(rng, 30_000, PROJECTS, date(2024, 12, 20), 40)
    warehouse.engine.command("SYSTEM STOP MERGES file_downloads")
    warehouse.load("file_downloads", [("d.json", convert(gz(lines)).downloads)])
    assert warehouse.engine.rows(
        "SELECT count(), sum(rows) FROM system.parts WHERE active AND table = 'file_downloads'"
    ) == [(1, 30_000)]


def test_a_bad_file_fails_alone_and_loads_nothing(warehouse: ClickHouseWarehouse) -> None:
    good = ("processed/x/downloads-good.json", ROW)
    bad = ("processed/x/downloads-bad.json", ROW + b"{not json\n")
    with pytest.raises(WarehouseError) as failed:
        warehouse.load("file_downloads", [good, bad])
    assert str(failed.value).startswith(f"{warehouse.engine.name}: Code: ")
    assert "\n" not in str(failed.value)
    assert _scalar(warehouse, "SELECT count() FROM file_downloads") == 1  # the good one
    assert warehouse.engine.rows("SELECT name FROM linehaul_loaded_files") == [(good[0],)]


def test_local_files_are_read_where_they_lie(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    path = tmp_path / "it's [a] file.json"  # quotes and glob characters in the path
    path.write_bytes(ROW * 2 + ROW.rstrip(b"\n"))  # no newline at the end
    result = warehouse.load_local("file_downloads", [LocalFile("processed/x/y.json", path, rows=9)])
    assert (result.rows, result.loaded) == (3, ["processed/x/y.json"])
    assert _scalar(warehouse, "SELECT count() FROM file_downloads") == 3


def test_tables_follow_the_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A column added to the schema reaches a warehouse made before it: created, typed,
    loaded."""
    first = ClickHouseWarehouse(ChdbEngine(tmp_path / "ch"))
    first.close()
    extra = Field("distribution_size", "INTEGER")  # type: ignore[arg-type]
    nested = replace(
        TABLES["file_downloads"][4], fields=(*TABLES["file_downloads"][4].fields, extra)
    )
    changed = tuple(nested if f.name == "file" else f for f in TABLES["file_downloads"])
    monkeypatch.setitem(TABLES, "file_downloads", (*changed, Field("sha256", "STRING")))
    second = ClickHouseWarehouse(ChdbEngine(tmp_path / "ch"))
    try:
        row = ROW.replace(b'"type":"sdist"}', b'"type":"sdist","distribution_size":12}')
        row = row.replace(b'"details"', b'"sha256":"ab","details"')
        second.load("file_downloads", [("x.json", row)])
        assert second.engine.rows("SELECT file.distribution_size, sha256 FROM file_downloads") == [
            (12, "ab")
        ]
        types = dict(
            second.engine.rows(
                "SELECT name, type FROM system.columns WHERE table = 'file_downloads'"
            )
        )
        assert types["sha256"] == "Nullable(String)"
        assert types["timestamp"] == "Nullable(DateTime64(6, 'UTC'))"
        assert types["country_code"] == "Nullable(String)"
        codecs = dict(
            second.engine.rows(
                "SELECT name, compression_codec FROM system.columns WHERE table = 'file_downloads'"
            )
        )
        assert set(codecs.values()) == {"CODEC(ZSTD(1))"}
    finally:
        second.close()


def test_urls(tmp_path: Path) -> None:
    opened = open_warehouse(f"chdb://{tmp_path}/w")
    assert isinstance(opened, ClickHouseWarehouse)
    with pytest.raises(WarehouseError) as refused:  # chDB: one database per process
        open_warehouse(f"chdb://{tmp_path}/other")
    assert "holds one database per process" in str(refused.value)
    opened.close()
    for url in ("chdb:", "clickhouse://", "clickhouse://host:9000", "clickhouse://u:p@h:1/db"):
        with pytest.raises(ValueError):
            open_warehouse(url)


def _duckdb_rollups(path: Path) -> set[tuple[object, ...]]:
    """What DuckDB's readers see: the settled days' rollups and the open days' rows."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        source, params = duck_rollups.daily(con)
        rows = con.execute(
            f"SELECT {duck_rollups.KEY}, sum(downloads) FROM ({source}) "
            "GROUP BY ALL HAVING sum(downloads) > 0",
            params,
        ).fetchall()
    finally:
        con.close()
    return set(rows)


def test_rollups_agree_with_duckdbs(tmp_path: Path) -> None:
    """The same files into both engines: the materialized views' sums are DuckDB's rollups,
    key for key (two independent implementations of one definition), ranges that are no
    download left out by both."""
    rng = random.Random(7)
    files = [
        (
            f"d{n}.json",
            convert(
                gz(random_lines(rng, 3000, PROJECTS, date(2024, 12, 20), 40, n * 3000, True))
            ).downloads,
        )
        for n in range(4)
    ]
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        for file in files:
            duck.load("file_downloads", [file])
    finally:
        duck.close()
    house = ClickHouseWarehouse(ChdbEngine(tmp_path / "ch"))
    try:
        for file in files:
            house.load("file_downloads", [file])
        ours = set(
            house.engine.rows(
                "SELECT day, project, dimension, value, mirror, ci, sum(downloads) "
                f"FROM download_rollups{REAL} GROUP BY ALL HAVING sum(downloads) > 0"
            )
        )
        names = set(house.engine.rows("SELECT name, normalized FROM project_names FINAL"))
    finally:
        house.close()
    assert ours == _duckdb_rollups(tmp_path / "w.duckdb")
    assert names == {(p, p.lower().replace("_", "-").replace(".", "-")) for p in PROJECTS}


def test_distribution_rows_go_in_once_as_in_duckdb(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """Each file's row once: a filename twice in a batch, a batch again (publish's retry
    after a kill), a batch whose insert went in before a crash (the same token), and the
    rows read back field by field as DuckDB reads its own."""
    rows = [distribution_row(n, METADATA) for n in range(4)]
    assert warehouse.add_distributions([rows[0], rows[1], rows[0]]) == [
        "demo-0.0.tar.gz",
        "demo-1.0.tar.gz",
    ]
    assert warehouse.add_distributions(rows[:2]) == []
    crashed = "\0".join(["demo-2.0.tar.gz", "demo-3.0.tar.gz"])
    warehouse.engine.insert(insert_sql("distribution_metadata", crashed), b"".join(rows[2:]))
    assert warehouse.add_distributions(rows) == []  # it is there: nothing twice
    assert warehouse.distribution_files() == {f"demo-{n}.0.tar.gz" for n in range(4)}
    assert _scalar(warehouse, "SELECT count() FROM distribution_metadata") == 4
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        duck.add_distributions(rows)
        expected = duck.con.execute("SELECT * FROM distribution_metadata ORDER BY filename")
        names = [column[0] for column in expected.description]
        theirs = expected.fetchall()
    finally:
        duck.close()
    ours = warehouse.engine.rows("SELECT * FROM distribution_metadata FINAL ORDER BY filename")
    assert [dict(zip(names, row, strict=True)) for row in ours] == [
        dict(zip(names, row, strict=True)) for row in theirs
    ]
    assert ours[0][names.index("upload_time")] == datetime(2026, 1, 1, 10, 11, 12, 345678)


def test_a_batch_whose_token_outlived_its_rows_goes_in_again(
    warehouse: ClickHouseWarehouse,
) -> None:
    """ClickHouse logs an insert's token before it puts the part in place: a publish killed
    between the two leaves a token without rows (CI once lost 50 upload rows so). Here the
    rows of a batch inserted with its token are deleted, which leaves the token: the batch's
    retry must put them back, not be dropped as a duplicate."""
    rows = [distribution_row(n, METADATA) for n in range(3)]
    names = [f"demo-{n}.0.tar.gz" for n in range(3)]
    warehouse.engine.insert(insert_sql("distribution_metadata", "\0".join(names)), b"".join(rows))
    warehouse.engine.command(
        "ALTER TABLE distribution_metadata DELETE WHERE 1 SETTINGS mutations_sync = 2"
    )
    assert warehouse.distribution_files() == set()
    assert warehouse.add_distributions(rows) == names
    assert warehouse.distribution_files() == set(names)
    assert _scalar(warehouse, "SELECT count() FROM distribution_metadata") == 3


def test_the_stats_command_reads_clickhouse(tmp_path: Path) -> None:
    rng = random.Random(5)
    lines = random_lines(rng, 2000, ["alpha", "beta"], date(2024, 12, 1), 20)
    house = ClickHouseWarehouse(ChdbEngine(tmp_path / "ch"))
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        house.load("file_downloads", [("a.json", convert(gz(lines)).downloads)])
        duck.load("file_downloads", [("a.json", convert(gz(lines)).downloads)])
    finally:
        house.close()
        duck.close()
    outputs = []
    for url in (f"chdb://{tmp_path}/ch", f"duckdb://{tmp_path}/w.duckdb"):
        args = ["stats", "alpha", "--start", "2024-12-01", "--end", "2024-12-20"]
        out = CliRunner().invoke(
            main, [*args, "--by", "installer", "python", "--format", "csv", "--warehouse", url]
        )
        assert out.exit_code == 0, out.output
        top = CliRunner().invoke(
            main,
            [
                "stats",
                "--top",
                "2",
                "--start",
                "2024-12-01",
                "--end",
                "2024-12-20",
                "--format",
                "json",
                "--warehouse",
                url,
            ],
        )
        assert top.exit_code == 0, top.output
        outputs.append((out.stdout, top.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0][0].startswith("installer,python,download_count,percent\n")
    missing = CliRunner().invoke(main, ["stats", "alpha", "--warehouse", f"chdb://{tmp_path}/none"])
    assert missing.exit_code == 1
    assert missing.output.startswith(f"Error: no warehouse at {tmp_path}/none")


def test_a_directory_another_process_holds_is_waited_for_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Another process has the chDB directory open (a second publisher): the wait ends in
    one line, and nothing else reaches stderr (chDB printed an error for each refused
    attempt to open, every 50 ms); once the holder is gone the directory opens."""
    holder = spawn(
        [sys.executable, "-c", _HOLD_CHDB, str(tmp_path / "ch")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    capfd.readouterr()
    with pytest.raises(WarehouseError) as refused:
        ChdbEngine(tmp_path / "ch", wait=1.0)
    assert str(refused.value) == f"cannot open chdb://{tmp_path}/ch: another process has it open"
    assert capfd.readouterr().err == ""
    holder.communicate(b"", timeout=30)
    ChdbEngine(tmp_path / "ch").close()


_HOLD_CHDB = (
    "import sys; from chdb.session import Session; s = Session(sys.argv[1]); "
    "print('held', flush=True); sys.stdin.read(); s.close()"
)


def test_server_urls_and_an_unreachable_server() -> None:
    assert ServerAddress.parse("clickhouse://ana@db.example:8443/pypi?secure=true") == (
        ServerAddress("db.example", 8443, "ana", "pypi", True)
    )
    assert ServerAddress.parse("clickhouse://127.0.0.1/pypi") == (
        ServerAddress("127.0.0.1", 8123, "default", "pypi", False)
    )
    with pytest.raises(ValueError) as secret:
        ServerAddress.parse("clickhouse://ana:hunter2@h:1/db")
    assert "hunter2" not in str(secret.value) and "CLICKHOUSE_PASSWORD" in str(secret.value)
    port = free_port()  # nothing listens there
    with pytest.raises(WarehouseError) as refused:
        open_warehouse(f"clickhouse://127.0.0.1:{port}/pypi")
    assert str(refused.value).startswith(
        f"cannot open clickhouse://default@127.0.0.1:{port}/pypi: "
    )
    assert "\n" not in str(refused.value)
