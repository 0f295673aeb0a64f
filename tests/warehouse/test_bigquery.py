"""The BigQuery back end against a fake BigQuery API on loopback (BigQuery itself cannot be
reached from here): job configuration, deterministic job IDs, exactly-once on retry."""

from __future__ import annotations

from pythonhosted.linehaul.schema import FILE_DOWNLOADS, bigquery_fields
from pythonhosted.warehouse import open_warehouse
from pythonhosted.warehouse.bigquery import BigQueryWarehouse, job_id
from support.fake_bigquery import fake_bigquery

ROWS = b'{"timestamp":"2021-01-07 20:54:54 +00:00"}\n{"timestamp":"2021-01-07 20:54:55 +00:00"}\n'


def test_load_jobs_mirror_the_reference() -> None:
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
        assert fake.uploads[ident] == ROWS
        assert all(
            path.startswith("/upload/bigquery/v2/projects/proj/jobs") or method == "GET"
            for method, path in fake.requests
        )


def test_a_retried_file_is_not_loaded_again() -> None:
    with fake_bigquery("proj") as (fake, client):
        warehouse = BigQueryWarehouse(client, "proj", ["ds"])
        files = [("processed/20210107/simple-a.json", ROWS)]
        assert warehouse.load("simple_requests", files).loaded == [files[0][0]]
        again = warehouse.load("simple_requests", files)
        assert (again.rows, again.loaded, again.skipped) == (0, [], [files[0][0]])
        assert len(fake.jobs) == 1


def test_bad_urls() -> None:
    for url in ("bigquery://", "bigquery://project", "bigquery:///dataset"):
        try:
            open_warehouse(url)
        except ValueError as exc:
            assert "bigquery://PROJECT/DATASET" in str(exc)
        else:
            raise AssertionError(url)
