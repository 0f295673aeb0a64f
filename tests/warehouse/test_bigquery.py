"""The BigQuery back end against a fake BigQuery API on loopback (BigQuery itself cannot be
reached from here): job configuration, deterministic job IDs, exactly-once on retry, for
multipart uploads and for the resumable uploads files of 5 MB and more take.

google-cloud-bigquery imports pandas (about a second of CPU), so the tests import the back end
in their bodies: every pytest worker collects this module, only the one that runs a test pays.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from pythonhosted.warehouse import LocalFile, WarehouseError, open_warehouse
from pythonhosted.warehouse.schema import FILE_DOWNLOADS, TABLES, Field, bigquery_fields
from support.fake_bigquery import PUBLIC_SCHEMA, fake_bigquery, schema_mismatch

MIB = 1024 * 1024
DIST = "distribution_metadata"
ROWS = b'{"timestamp":"2021-01-07 20:54:54 +00:00"}\n{"timestamp":"2021-01-07 20:54:55 +00:00"}\n'


def test_load_jobs_mirror_the_reference() -> None:
    from pythonhosted.warehouse.bigquery import BigQueryWarehouse, job_id

    with fake_bigquery("proj") as (fake, client):
        warehouse = BigQueryWarehouse(client, "proj", ["ds1", "ds2"])
        result = warehouse.load("file_downloads", [("processed/20210107/downloads-a.json", ROWS)])
        assert (result.rows, result.loaded, result.skipped) == (
            4,
            ["processed/20210107/downloads-a.json"],
            [],
        )
        assert len(fake.jobs) == 2
        ident = job_id("ds1", "file_downloads", "processed/20210107/downloads-a.json")
        job = fake.jobs[ident]
        load = job["configuration"]["load"]
        assert load["sourceFormat"] == "NEWLINE_DELIMITED_JSON"
        assert load["ignoreUnknownValues"] is True
        assert load["writeDisposition"] == "WRITE_APPEND"
        assert load["destinationTable"] == {
            "projectId": "proj",
            "datasetId": "ds1",
            "tableId": "file_downloads",
        }
        assert load["timePartitioning"] == {"type": "DAY", "field": "timestamp"}
        assert load["schema"]["fields"] == bigquery_fields(FILE_DOWNLOADS)
        assert load["schemaUpdateOptions"] == ["ALLOW_FIELD_ADDITION"]  # adds "response"
        assert [c["name"] for c in fake.tables["file_downloads"]][-1] == "response"
        assert fake.uploads[ident] == ROWS
        # Rows go up through the upload endpoint only; the other POSTs are the rollup views'
        # DDL, one query job per view and dataset.
        others = [
            path
            for method, path in fake.requests
            if not path.startswith("/upload/bigquery/v2/projects/proj/jobs") and method != "GET"
        ]
        assert others == ["/bigquery/v2/projects/proj/jobs?prettyPrint=false"] * 12
        assert len(fake.query_jobs) == 12


def test_rollups_are_materialized_views_made_once_per_dataset() -> None:
    from pythonhosted.warehouse.bigquery import BigQueryWarehouse, rollup_views_sql

    with fake_bigquery("proj") as (fake, client):
        warehouse = BigQueryWarehouse(client, "proj", ["ds1"])
        warehouse.load("simple_requests", [("processed/x/simple-a.json", ROWS)])
        assert fake.query_jobs == {}  # simple requests have no rollups
        warehouse.load("file_downloads", [("processed/x/downloads-a.json", ROWS)])
        warehouse.load("file_downloads", [("processed/x/downloads-b.json", ROWS)])
    queries = [job["configuration"]["query"]["query"] for job in fake.query_jobs.values()]
    assert sorted(queries) == sorted(rollup_views_sql("proj", "ds1"))
    assert len(queries) == 6
    version = next(q for q in queries if "download_rollups_version`" in q)
    assert version == (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS `proj.ds1.download_rollups_version` "
        "PARTITION BY day AS SELECT DATE(timestamp) AS day, "
        "LOWER(REGEXP_REPLACE(project, r'[-_.]+', '-')) AS project, "
        "COALESCE(details.installer.name IN ('bandersnatch', 'z3c.pypimirror', 'Artifactory', "
        "'devpi', 'Nexus', 'pep381client'), FALSE) AS mirror, details.ci AS ci, "
        "file.version AS value, COUNT(*) AS downloads "
        "FROM `proj.ds1.file_downloads` WHERE coalesce(response.range_start, 0) = 0 "
        "GROUP BY 1, 2, 3, 4, 5"
    )


def test_a_retried_file_is_not_loaded_again() -> None:
    from pythonhosted.warehouse.bigquery import BigQueryWarehouse

    with fake_bigquery("proj") as (fake, client):
        warehouse = BigQueryWarehouse(client, "proj", ["ds"])
        files = [("processed/20210107/simple-a.json", ROWS)]
        assert warehouse.load("simple_requests", files).loaded == [files[0][0]]
        again = warehouse.load("simple_requests", files)
        assert (again.rows, again.loaded, again.skipped) == (0, [], [files[0][0]])
        assert len(fake.jobs) == 1


def test_local_files_are_uploaded_as_their_contents(tmp_path: Path) -> None:
    from pythonhosted.warehouse.bigquery import BigQueryWarehouse, job_id

    path = tmp_path / "downloads-a.json"
    path.write_bytes(ROWS)
    name = "processed/20210107/downloads-a.json"
    with fake_bigquery("proj") as (fake, client):
        warehouse = BigQueryWarehouse(client, "proj", ["ds"])
        result = warehouse.load_local("file_downloads", [LocalFile(name, path, rows=2)])
        assert (result.rows, result.loaded) == (2, [name])
        assert fake.uploads[job_id("ds", "file_downloads", name)] == ROWS


def test_bad_urls() -> None:
    for url in ("bigquery://", "bigquery://project", "bigquery:///dataset"):
        try:
            open_warehouse(url)
        except ValueError as exc:
            assert "bigquery://PROJECT/DATASET" in str(exc)
        else:
            raise AssertionError(url)


def _big_file(size: int) -> bytes:
    """NDJSON rows of exactly ``size`` bytes (newline-terminated), every row different."""
    row = b'{"timestamp":"2021-01-07 20:54:54 +00:00","url":"/packages/%08d/%s"}\n'
    bare = len(row % (0, b""))
    rows, total = [], 0
    while size - total >= 2 * bare + 40:  # room for this row and the last one
        rows.append(row % (len(rows), b"x" * 40))
        total += bare + 40
    rows.append(row % (len(rows), b"x" * (size - total - bare)))  # pads to the exact size
    return b"".join(rows)


def test_a_file_of_5_mb_or_more_goes_through_the_resumable_upload() -> None:
    from pythonhosted.warehouse.bigquery import BigQueryWarehouse, job_id

    data = _big_file(6_000_000)
    name = "processed/20210107/downloads-big.json"
    with fake_bigquery("proj") as (fake, client):
        result = BigQueryWarehouse(client, "proj", ["ds"]).load("file_downloads", [(name, data)])
        assert (result.rows, result.loaded) == (data.count(b"\n"), [name])
        ident = job_id("ds", "file_downloads", name)
        assert fake.uploads[ident] == data
        (session,) = fake.sessions.values()
        assert session.content_type == "*/*"
        assert session.content_ranges == [f"bytes 0-{len(data) - 1}/{len(data)}"]
        load = fake.jobs[ident]["configuration"]["load"]
        assert load["sourceFormat"] == "NEWLINE_DELIMITED_JSON"
        assert load["ignoreUnknownValues"] is True
        assert load["writeDisposition"] == "WRITE_APPEND"
        assert load["destinationTable"]["tableId"] == "file_downloads"
        assert load["timePartitioning"] == {"type": "DAY", "field": "timestamp"}
        assert load["schema"]["fields"] == bigquery_fields(FILE_DOWNLOADS)
        assert load["schemaUpdateOptions"] == ["ALLOW_FIELD_ADDITION"]  # adds "response"
        assert [c["name"] for c in fake.tables["file_downloads"]][-1] == "response"
        assert [method for method, _ in fake.requests[:2]] == ["POST", "PUT"]
        assert fake.requests[0][1].endswith(
            "/upload/bigquery/v2/projects/proj/jobs?uploadType=resumable"
        )


@pytest.mark.parametrize("size", [5 * MIB + 12345, 6 * MIB])
def test_resumable_upload_in_chunks(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files over the client's chunk size (100 MB) go up in several PUTs; a 1 MiB chunk
    size stands in for it. A size that is a whole number of chunks ends with an empty PUT."""
    from google.cloud.bigquery import client as bigquery_client

    from pythonhosted.warehouse.bigquery import BigQueryWarehouse, job_id

    monkeypatch.setattr(bigquery_client, "_DEFAULT_CHUNKSIZE", MIB)
    data = _big_file(size)
    name = "processed/20210107/simple-big.json"
    with fake_bigquery("proj") as (fake, client):
        result = BigQueryWarehouse(client, "proj", ["ds"]).load("simple_requests", [(name, data)])
        assert result.loaded == [name]
        assert fake.uploads[job_id("ds", "simple_requests", name)] == data
        (session,) = fake.sessions.values()
        whole = [f"bytes {n * MIB}-{(n + 1) * MIB - 1}/*" for n in range(size // MIB)]
        if size % MIB:
            last = [f"bytes {size // MIB * MIB}-{size - 1}/{size}"]
        else:
            last = [f"bytes */{size}"]
        assert session.content_ranges == whole + last


@pytest.mark.parametrize("conflict_on_initiate", [True, False])
def test_a_retried_large_file_is_not_loaded_again(conflict_on_initiate: bool) -> None:
    """The 409 for a known job ID works through the resumable upload too, whether BigQuery
    answers it when the upload starts or when it ends."""
    from pythonhosted.warehouse.bigquery import BigQueryWarehouse

    files = [("processed/20210107/downloads-big.json", _big_file(5 * MIB))]
    with fake_bigquery("proj") as (fake, client):
        fake.conflict_on_initiate = conflict_on_initiate
        warehouse = BigQueryWarehouse(client, "proj", ["ds"])
        assert warehouse.load("file_downloads", files).loaded == [files[0][0]]
        again = warehouse.load("file_downloads", files)
        assert (again.rows, again.loaded, again.skipped) == (0, [], [files[0][0]])
        assert len(fake.jobs) == 1
        assert len(fake.sessions) == (1 if conflict_on_initiate else 2)


ADDED = {
    "file_downloads": ["response"],
    "simple_requests": [],
    "distribution_metadata": ["provides_extra", "supported_platform", "dynamic"],
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_column_has_the_public_tables_mode(table: str) -> None:
    """Our tables, as sent with every load job, against PyPI's public ones (the fixture the
    fake checks jobs with): every public column with its type and mode (all NULLABLE in
    the event tables), and after them only the columns of ours, each one BigQuery lets a
    load add to a PyPI-shaped table (NULLABLE or REPEATED)."""
    ours = bigquery_fields(TABLES[table])
    public = PUBLIC_SCHEMA[table]
    assert schema_mismatch(public, ours) is None
    assert schema_mismatch(ours, public, allow_additions=True) is None
    assert [column["name"] for column in ours[len(public) :]] == ADDED[table]
    assert [column["name"] for column in ours[: len(public)]] == [c["name"] for c in public]
    assert all(column["mode"] in ("NULLABLE", "REPEATED") for column in ours[len(public) :])


def _required(fields: tuple[Field, ...], path: tuple[str, ...]) -> tuple[Field, ...]:
    """``fields`` with the column at ``path`` REQUIRED (linehaul's 2018 schema had some)."""
    head, *rest = path
    changed = []
    for f in fields:
        if f.name == head:
            f = (
                replace(f, fields=_required(f.fields, tuple(rest)))
                if rest
                else replace(f, mode="REQUIRED")
            )
        changed.append(f)
    return tuple(changed)


@pytest.mark.parametrize(
    ("table", "path"),
    [
        ("file_downloads", ("timestamp",)),
        ("file_downloads", ("file",)),
        ("file_downloads", ("file", "project")),
        ("simple_requests", ("project",)),
        ("simple_requests", ("url",)),
    ],
)
def test_a_mode_change_is_refused_as_bigquery_refuses_it(
    table: str, path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema regression fails here: the fake refuses the job as BigQuery does for a table
    that exists, and the warehouse reports it in one line."""
    from pythonhosted.warehouse.bigquery import BigQueryWarehouse

    monkeypatch.setitem(TABLES, table, _required(TABLES[table], path))
    name = f"processed/20210107/{table}-a.json"
    with fake_bigquery("proj") as (fake, client):
        warehouse = BigQueryWarehouse(client, "proj", ["ds"])
        with pytest.raises(WarehouseError) as refused:
            warehouse.load(table, [(name, ROWS)])
        reason = (
            f"Provided Schema does not match Table proj:ds.{table}. "
            f"Field {'.'.join(path)} has changed mode from NULLABLE to REQUIRED."
        )
        # the client repeats the job's error list after its errorResult
        assert str(refused.value) == (
            f"BigQuery load of {name} failed: 400 {reason}; reason: invalid, message: {reason}"
        )
        assert fake.uploads == {}


def _distribution(filename: str, name: str = "demo") -> bytes:
    row = {field.name: [] if field.mode == "REPEATED" else None for field in TABLES[DIST]}
    row |= {"name": name, "version": "1.0", "filename": filename, "size": 1, "path": "a/b"}
    row |= {"upload_time": "2026-01-02 03:04:05.000006 +00:00", "has_signature": False}
    return orjson.dumps(row) + b"\n"


def test_distribution_rows_are_loaded_once_per_file() -> None:
    """One load job per batch of rows the dataset lacks; a batch again (a publish killed
    before it deleted the queue) and a batch that overlaps it load only what is new."""
    from pythonhosted.warehouse.bigquery import BigQueryWarehouse, job_id

    rows = [_distribution(f"demo-{n}.tar.gz") for n in range(3)]
    with fake_bigquery("proj") as (fake, client):
        warehouse = BigQueryWarehouse(client, "proj", ["ds1", "ds2"])
        assert warehouse.add_distributions(rows) == [f"demo-{n}.tar.gz" for n in range(3)]
        assert warehouse.add_distributions(rows) == []
        more = [*rows[1:], _distribution("demo-3.tar.gz"), _distribution("demo-3.tar.gz")]
        assert warehouse.add_distributions(more) == ["demo-3.tar.gz"]
        assert warehouse.distribution_files() == {f"demo-{n}.tar.gz" for n in range(4)}
        for dataset in ("ds1", "ds2"):
            names = [row["filename"] for row in fake.distributions[dataset]]
            assert sorted(names) == [f"demo-{n}.tar.gz" for n in range(4)]
        loads = [job["configuration"]["load"] for job in fake.jobs.values()]
        assert len(loads) == 4  # two batches, two datasets
        first = fake.jobs[job_id("ds1", DIST, "\0".join(f"demo-{n}.tar.gz" for n in range(3)))]
        load = first["configuration"]["load"]
        assert load["destinationTable"]["tableId"] == DIST
        assert load["timePartitioning"] == {"type": "DAY", "field": "upload_time"}
        assert load["schemaUpdateOptions"] == ["ALLOW_FIELD_ADDITION"]
        assert load["schema"]["fields"] == bigquery_fields(TABLES[DIST])
        # Before each batch: a look for loads still running, then for the filenames held.
        listings = [path for method, path in fake.requests if path.split("?")[0].endswith("/jobs")]
        assert sum("stateFilter=running" in path for path in listings) == 6


def test_a_load_that_adds_a_column_needs_the_option() -> None:
    """Without ALLOW_FIELD_ADDITION, BigQuery (and the fake) refuse a job whose schema adds a
    column to an existing table; with it, never a REQUIRED one."""
    public = PUBLIC_SCHEMA["file_downloads"]
    response = [*public, {"name": "response", "type": "RECORD", "mode": "NULLABLE", "fields": []}]
    assert schema_mismatch(response, public) == "Cannot add fields (column: response)"
    assert schema_mismatch(response, public, allow_additions=True) is None
    required = [*public, {"name": "x", "type": "STRING", "mode": "REQUIRED"}]
    assert schema_mismatch(required, public, allow_additions=True) == (
        "Cannot add required fields to an existing schema. (field: x)"
    )
