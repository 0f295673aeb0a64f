"""BigQuery back end: one NDJSON load job per result file, as PyPI's publish does.

Jobs mirror the reference's configuration: NEWLINE_DELIMITED_JSON, ``ignore_unknown_values``,
appending to ``{project}.{dataset}.{table}`` for each configured dataset (the reference can
load into several), with the table schema from :mod:`pythonhosted.warehouse.schema` (tables
are created on first load, partitioned by day on their time column, ``timestamp`` like
PyPI's). ``ALLOW_FIELD_ADDITION`` lets a load add the columns of ours to a table made before
them or by PyPI's schema (``file_downloads.response``; ``distribution_metadata``'s last
three), all NULLABLE or REPEATED as BigQuery requires of added columns.

Exactly once comes from the job ID, derived from dataset, table and file name: BigQuery
refuses a second job with the same ID (409), so a retry finds the earlier job instead of
loading again, and waits for it. The reference loads many files per job and duplicates rows
when it dies between the load and the delete. Limits: BigQuery keeps job IDs for about six
months, and a job that failed cannot be retried under its ID (the file stays in the results
store, reported).

Rollups are materialized views over ``file_downloads``, one per dimension of
:mod:`.rollups` plus the total, created (``IF NOT EXISTS``) by a query job after the first
load of downloads into each dataset in a process. Not an aggregate written by a query job
after each load job: a load job commits alone, so a crash between the two would leave the
aggregate a file short or, on retry, a file over; BigQuery keeps a materialized view
consistent with its base table by itself (queries read its stored part plus the base
table's changes since), and loads pay nothing for it.

``distribution_metadata`` rows go in one load job per batch, after a query for the filenames
the table holds already (left out) and a wait for any load of that table still running (a
publish killed while its job ran): the job ID is derived from the filenames it loads, so a
retry of the same batch finds the earlier job (409) instead of loading again, and a batch
that changed meanwhile no longer holds rows that job loaded.

The client uploads a file below 5 MB in one multipart request and a larger one through the
resumable protocol (a session, then chunks of up to 100 MB); the job resource, and so the job
ID, goes with the first request either way. BigQuery cannot be reached from the test
environment: tests run these jobs against a fake BigQuery HTTP API on 127.0.0.1, which speaks
both upload protocols, and check the requests (job configuration, uploaded bytes, chunking,
IDs, the 409 on a repeated ID).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from urllib.parse import urlsplit

import orjson
from google.api_core.exceptions import Conflict, GoogleAPIError, NotFound
from google.cloud import bigquery

from pythonhosted.errortext import first_line
from pythonhosted.warehouse.base import LoadResult, LocalFile, WarehouseError
from pythonhosted.warehouse.mirrors import MIRRORS
from pythonhosted.warehouse.rollups import COUNTED
from pythonhosted.warehouse.schema import EVENT_TABLES, TABLES, TIME_COLUMNS, bigquery_fields

JOB_TIMEOUT = 600.0
DISTRIBUTIONS = "distribution_metadata"


def job_id(dataset: str, table: str, name: str) -> str:
    """The deterministic job ID for loading result file ``name`` into ``dataset.table``."""
    digest = hashlib.sha256(f"{dataset}.{table}\0{name}".encode()).hexdigest()[:40]
    return f"linehaul_{table}_{digest}"


def job_config(table: str) -> bigquery.LoadJobConfig:
    """The load job configuration for one of the tables."""
    schema = [bigquery.SchemaField.from_api_repr(field) for field in bigquery_fields(TABLES[table])]
    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        ignore_unknown_values=True,
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        schema_update_options=[bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION],
        schema=schema,
        time_partitioning=bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=TIME_COLUMNS[table]
        ),
    )


# The rollup dimensions of :mod:`.rollups` in BigQuery's dialect ("" is the total).
ROLLUP_DIMENSIONS = {
    "total": "''",
    "version": "file.version",
    "installer": "details.installer.name",
    "python": r"REGEXP_EXTRACT(details.python, r'^[0-9]+\.[0-9]+')",
    "system": "details.system.name",
    "country": "country_code",
}


def rollup_views_sql(project: str, dataset: str) -> list[str]:
    """``CREATE MATERIALIZED VIEW`` statements, one per dimension, partitioned by day."""
    mirrors = ", ".join(f"'{name}'" for name in MIRRORS)
    statements = []
    for name, value in ROLLUP_DIMENSIONS.items():
        statements.append(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{project}.{dataset}.download_rollups_{name}` "
            "PARTITION BY day AS SELECT DATE(timestamp) AS day, "
            "LOWER(REGEXP_REPLACE(project, r'[-_.]+', '-')) AS project, "
            f"COALESCE(details.installer.name IN ({mirrors}), FALSE) AS mirror, "
            f"details.ci AS ci, {value} AS value, COUNT(*) AS downloads "
            f"FROM `{project}.{dataset}.file_downloads` WHERE {COUNTED} GROUP BY 1, 2, 3, 4, 5"
        )
    return statements


class BigQueryWarehouse:
    """Load jobs into ``project.dataset`` for each dataset, through ``client``."""

    def __init__(self, client: bigquery.Client, project: str, datasets: Sequence[str]) -> None:
        self.client = client
        self.project = project
        self.datasets = list(datasets)
        self._rollups: set[str] = set()  # datasets whose views this process made sure of

    @classmethod
    def from_url(cls, url: str) -> BigQueryWarehouse:
        """``bigquery://PROJECT/DATASET[,DATASET…]``, with Application Default Credentials."""
        parts = urlsplit(url)
        datasets = [name for name in parts.path.strip("/").split(",") if name]
        if not parts.netloc or not datasets:
            raise ValueError(f"BigQuery warehouse URL must be bigquery://PROJECT/DATASET: {url!r}")
        try:
            client = bigquery.Client(project=parts.netloc)
        except Exception as exc:  # no credentials, mostly
            raise WarehouseError(f"cannot open BigQuery: {first_line(exc)}") from exc
        return cls(client, parts.netloc, datasets)

    def load(self, table: str, files: Sequence[tuple[str, bytes]]) -> LoadResult:
        """One job per file and dataset; a file counts as loaded when every dataset has it."""
        if table not in EVENT_TABLES:
            raise ValueError(f"unknown table {table!r}")
        result = LoadResult()
        config = job_config(table)
        for name, data in files:
            fresh = False
            for dataset in self.datasets:
                rows = self._load_one(dataset, table, name, data, config)
                if rows is not None:
                    fresh = True
                    result.rows += rows
                if table == "file_downloads" and dataset not in self._rollups:
                    self._ensure_rollups(dataset)
            (result.loaded if fresh else result.skipped).append(name)
        return result

    def _ensure_rollups(self, dataset: str) -> None:
        """Create the rollup views once the table exists (IF NOT EXISTS: idempotent)."""
        try:
            for sql in rollup_views_sql(self.project, dataset):
                job = self.client.query(sql, job_id_prefix="linehaul_rollups_")
                job.result(timeout=JOB_TIMEOUT)
        except GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery rollup views in {dataset}: {exc}") from exc
        self._rollups.add(dataset)

    def load_local(self, table: str, files: Sequence[LocalFile]) -> LoadResult:
        """:meth:`load` with each file's contents read from disk (jobs take the bytes)."""
        return self.load(table, [(file.name, file.path.read_bytes()) for file in files])

    def _load_one(
        self, dataset: str, table: str, name: str, data: bytes, config: bigquery.LoadJobConfig
    ) -> int | None:
        """Rows loaded by a new job, or None when an earlier job with this ID did it."""
        identifier = job_id(dataset, table, name)
        destination = f"{self.project}.{dataset}.{table}"
        try:
            try:
                job = self.client.load_table_from_file(
                    io.BytesIO(data),
                    destination,
                    size=len(data),  # multipart upload below 5 MB, resumable from 5 MB on
                    job_config=config,
                    job_id=identifier,
                )
            except Conflict:
                earlier = self.client.get_job(identifier, project=self.project)
                earlier.result(timeout=JOB_TIMEOUT)
                return None
            job.result(timeout=JOB_TIMEOUT)  # a refused job (e.g. a schema mismatch) raises
        except GoogleAPIError as exc:  # one line: the reason BigQuery gave
            raise WarehouseError(f"BigQuery load of {name} failed: {exc}") from exc
        return int(job.output_rows or 0)

    def add_distributions(self, rows: Sequence[bytes]) -> list[str]:
        """Per dataset, one load job of the rows whose filename it lacks (see the module doc);
        the filenames added to any."""
        by_name: dict[str, bytes] = {}
        for row in rows:
            by_name.setdefault(str(orjson.loads(row)["filename"]), row)
        added: set[str] = set()
        config = job_config(DISTRIBUTIONS)
        for dataset in self.datasets:
            self._wait_for_loads(dataset)
            present = self._filenames(dataset, sorted(by_name))
            fresh = sorted(name for name in by_name if name not in present)
            if not fresh:
                continue
            data = b"".join(by_name[name].rstrip(b"\n") + b"\n" for name in fresh)
            if self._load_one(dataset, DISTRIBUTIONS, "\0".join(fresh), data, config) is not None:
                added.update(fresh)
        return sorted(added)

    def distribution_files(self) -> set[str]:
        """The filenames every dataset's ``distribution_metadata`` holds."""
        found = [self._filenames(dataset, None) for dataset in self.datasets]
        return set.intersection(*found) if found else set()

    def _filenames(self, dataset: str, names: list[str] | None) -> set[str]:
        """Which of ``names`` (all, for None) the dataset's table holds; none when there is
        no table yet."""
        table = f"`{self.project}.{dataset}.{DISTRIBUTIONS}`"
        sql = f"SELECT filename FROM {table}"
        params = []
        if names is not None:
            sql += " WHERE filename IN UNNEST(@names)"
            params.append(bigquery.ArrayQueryParameter("names", "STRING", names))
        try:
            job = self.client.query(
                sql,
                job_config=bigquery.QueryJobConfig(query_parameters=params),
                job_id_prefix="linehaul_filenames_",
            )
            return {row[0] for row in job.result(timeout=JOB_TIMEOUT)}
        except NotFound:
            return set()
        except GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery query of {dataset}.{DISTRIBUTIONS}: {exc}") from exc

    def _wait_for_loads(self, dataset: str) -> None:
        """Wait for our loads into the dataset's ``distribution_metadata`` that are still
        running or pending (a publish killed while they ran), so the filenames it holds are
        final before a batch is chosen."""
        prefix = f"linehaul_{DISTRIBUTIONS}_"
        try:
            for state in ("pending", "running"):
                for job in self.client.list_jobs(project=self.project, state_filter=state):
                    if job.job_id.startswith(prefix):
                        job.result(timeout=JOB_TIMEOUT)
        except GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery jobs of {dataset}: {exc}") from exc

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]
