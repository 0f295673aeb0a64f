"""A fake BigQuery HTTP API on 127.0.0.1, enough for load jobs: a test double, not BigQuery.

It accepts job uploads both ways google-cloud-bigquery sends them: multipart
(``POST /upload/bigquery/v2/projects/P/jobs?uploadType=multipart``, files under 5 MB) and
resumable (files of 5 MB and more), as google-resumable-media speaks it:

- ``POST ...?uploadType=resumable`` with the job resource as JSON and the media type in
  ``X-Upload-Content-Type``; the answer is 200 with a ``Location`` header, the session URL
  (``...&upload_id=ID``);
- ``PUT`` that URL once per chunk, with ``Content-Range: bytes A-B/*`` while the client does
  not know the total yet, ``bytes A-B/TOTAL`` for the last chunk, or ``bytes */TOTAL`` (no
  body) when the previous chunk turned out to be the last; each chunk must start where the
  last one ended. An intermediate chunk is answered 308 with ``Range: bytes=0-END`` (all bytes
  received so far), the last with 200 and the job resource.

It answers 409 for a job ID it has seen (as BigQuery does): for a resumable upload at
initiation, or, with ``conflict_on_initiate`` off, at the final chunk (where BigQuery reports
it is not documented; the client raises ``Conflict`` for either). It serves
``GET .../jobs/ID``, and records every request, each resumable session and the uploaded bytes,
so tests can check the contract: job configuration, job IDs, chunking and uploaded rows.

Every destination table already exists with the schema of PyPI's public table of that name
(``pypi_public_schema.json``: ``bigquery-public-data.pypi.file_downloads`` and
``simple_requests``, every column NULLABLE; ``distribution_metadata``, its modes as Warehouse
states them). A load job whose schema differs from it in a column's type or mode fails as
BigQuery fails it: the job is DONE with an ``errorResult`` ("Provided Schema does not match
Table …"), which the client raises from ``result()``; so does one that adds a column, unless
its ``schemaUpdateOptions`` hold ``ALLOW_FIELD_ADDITION`` and the column is NULLABLE or
REPEATED (then the table has it from there on, as in BigQuery).

Rows loaded into ``distribution_metadata`` are kept per dataset, and the one query the
warehouse asks of it (``SELECT filename FROM … [WHERE filename IN UNNEST(@names)]``) is
answered from them; any other query job is DDL (the rollups' views), DONE with no rows. Job
listings (``GET …/jobs?stateFilter=``) are empty: every job is DONE when created.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:  # the client library imports pandas: only the tests that use it pay
    from google.cloud import bigquery

_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)")
PUBLIC_SCHEMA: dict[str, list[dict[str, Any]]] = json.loads(
    (Path(__file__).parent / "pypi_public_schema.json").read_text()
)


def schema_mismatch(
    sent: list[dict[str, Any]],
    table: list[dict[str, Any]],
    prefix: str = "",
    *,
    allow_additions: bool = False,
) -> str | None:
    """What BigQuery would refuse in a load job's schema for an existing table, or None.
    ``allow_additions``: the job has ``ALLOW_FIELD_ADDITION`` (new NULLABLE or REPEATED
    columns are taken; a new REQUIRED one never is)."""
    existing = {column["name"]: column for column in table}
    for column in sent:
        name = prefix + column["name"]
        current = existing.get(column["name"])
        mode = column.get("mode", "NULLABLE")
        if current is None:
            if not allow_additions:
                return f"Cannot add fields (column: {name})"
            if mode == "REQUIRED":
                return f"Cannot add required fields to an existing schema. (field: {name})"
            continue
        if mode != current["mode"]:
            return f"Field {name} has changed mode from {current['mode']} to {mode}"
        if column["type"] != current["type"]:
            return f"Field {name} has changed type from {current['type']} to {column['type']}"
        if current["type"] == "RECORD":
            inner = schema_mismatch(
                column.get("fields", []),
                current["fields"],
                name + ".",
                allow_additions=allow_additions,
            )
            if inner is not None:
                return inner
    return None


def _merged(table: list[dict[str, Any]], sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's schema after a load added ``sent``'s new columns (nested ones too)."""
    existing = {column["name"]: column for column in table}
    merged = []
    for column in table:
        added = next((c for c in sent if c["name"] == column["name"]), None)
        if column["type"] == "RECORD" and added is not None:
            column = {**column, "fields": _merged(column["fields"], added.get("fields", []))}
        merged.append(column)
    merged += [column for column in sent if column["name"] not in existing]
    return merged


@dataclass
class ResumableSession:
    """One resumable upload as the fake saw it: what the client declared and sent."""

    resource: dict[str, Any]
    content_type: str | None
    data: bytearray = field(default_factory=bytearray)
    content_ranges: list[str] = field(default_factory=list)


class FakeBigQuery:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.query_jobs: dict[str, dict[str, Any]] = {}  # DDL the warehouse runs
        self.uploads: dict[str, bytes] = {}
        self.sessions: dict[str, ResumableSession] = {}
        self.requests: list[tuple[str, str]] = []
        self.conflict_on_initiate = True
        self.tables: dict[str, list[dict[str, Any]]] = dict(PUBLIC_SCHEMA)
        self.distributions: dict[str, list[dict[str, Any]]] = {}  # rows, by dataset
        self.lock = threading.Lock()


def _handler(state: FakeBigQuery) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(
            self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if body is not None:
                self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, reason: str) -> None:
            error = {"code": status, "message": message, "errors": [{"reason": reason}]}
            self._reply(status, {"error": error})

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def _query(self) -> dict[str, list[str]]:
            return parse_qs(urlsplit(self.path).query)

        def do_POST(self) -> None:
            self.requests_log()
            if self._query().get("uploadType") == ["resumable"]:
                self._initiate()
                return
            body = self._body()
            if self.headers.get("content-type", "").startswith("application/json"):
                self._query_job(json.loads(body))
                return
            boundary = self.headers["content-type"].split("boundary=", 1)[1].strip("'\"")
            parts = body.split(b"--" + boundary.encode())[1:3]
            resource = json.loads(parts[0].split(b"\r\n\r\n", 1)[1])
            upload = parts[1].split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
            self._create_job(resource, upload)

        def _create_job(self, resource: dict[str, Any], upload: bytes) -> None:
            """Run the load job at once (the fake's jobs are DONE when created), or 409."""
            job_id = resource["jobReference"]["jobId"]
            with state.lock:
                if job_id in state.jobs:
                    self._error(409, f"Already Exists: Job {job_id}", "duplicate")
                    return
                load = resource["configuration"]["load"]
                refusal = _refusal(state, load)
                if refusal is None:
                    resource["status"] = {"state": "DONE"}
                    resource["statistics"] = {"load": {"outputRows": str(upload.count(b"\n"))}}
                    state.uploads[job_id] = upload
                    _took(state, load, upload)
                else:
                    error = {"reason": "invalid", "message": refusal}
                    resource["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
                state.jobs[job_id] = resource
            self._reply(200, resource)

        def _query_job(self, resource: dict[str, Any]) -> None:
            """A query job (the rollups' DDL): recorded and DONE at once, with no rows."""
            resource["status"] = {"state": "DONE"}
            resource.setdefault("statistics", {})["query"] = {}
            with state.lock:
                state.query_jobs[resource["jobReference"]["jobId"]] = resource
            self._reply(200, resource)

        def _initiate(self) -> None:
            resource = json.loads(self._body())
            job_id = resource["jobReference"]["jobId"]
            if state.conflict_on_initiate and job_id in state.jobs:
                self._error(409, f"Already Exists: Job {job_id}", "duplicate")
                return
            upload_id = uuid.uuid4().hex
            state.sessions[upload_id] = ResumableSession(
                resource, self.headers.get("x-upload-content-type")
            )
            host, port = self.server.server_address[:2]
            location = f"http://{host!s}:{port}{self.path}&upload_id={upload_id}"
            self._reply(200, {}, {"location": location})

        def do_PUT(self) -> None:
            self.requests_log()
            upload_id = self._query().get("upload_id", [""])[0]
            session = state.sessions.get(upload_id)
            if session is None:
                self._error(404, f"No upload session {upload_id!r}", "notFound")
                return
            content_range = self.headers.get("content-range", "")
            match = _CONTENT_RANGE.fullmatch(content_range)
            chunk = self._body()
            if match is None:
                self._error(400, f"Bad Content-Range {content_range!r}", "invalid")
                return
            start, end, total = match.groups()
            if start is not None and (
                int(start) != len(session.data) or int(end) - int(start) + 1 != len(chunk)
            ):
                self._error(400, f"Chunk {content_range} does not continue the upload", "invalid")
                return
            session.content_ranges.append(content_range)
            session.data += chunk
            if total == "*":
                received = len(session.data)
                headers = {"range": f"bytes=0-{received - 1}"} if received else {}
                self._reply(308, None, headers)
                return
            if int(total) != len(session.data):
                self._error(400, f"Upload ends at {total}, got {len(session.data)}", "invalid")
                return
            self._create_job(session.resource, bytes(session.data))

        def do_GET(self) -> None:
            self.requests_log()
            job_id = self.path.split("?", 1)[0].rsplit("/", 1)[1]
            if job_id == "jobs":  # a listing: nothing is ever pending or running here
                self._reply(200, {"jobs": []})
                return
            if "/queries/" in self.path and job_id in state.query_jobs:
                reference = state.query_jobs[job_id]["jobReference"]
                schema, rows = _answer(state, state.query_jobs[job_id]["configuration"]["query"])
                results = {"jobReference": reference, "jobComplete": True}
                results["totalRows"] = str(len(rows))
                self._reply(200, {**results, "schema": {"fields": schema}, "rows": rows})
                return
            if job_id in state.query_jobs:
                self._reply(200, state.query_jobs[job_id])
                return
            if job_id not in state.jobs:
                self._reply(404, {"error": {"code": 404, "message": "Not found"}})
                return
            self._reply(200, state.jobs[job_id])

        def requests_log(self) -> None:
            state.requests.append((self.command, self.path))

    return Handler


def _refusal(state: FakeBigQuery, load: dict[str, Any]) -> str | None:
    """BigQuery's message for a load job into an existing table with another schema."""
    destination = load["destinationTable"]
    table = state.tables.get(destination["tableId"])
    if table is None or "schema" not in load:
        return None
    allow = "ALLOW_FIELD_ADDITION" in load.get("schemaUpdateOptions", [])
    mismatch = schema_mismatch(load["schema"]["fields"], table, allow_additions=allow)
    if mismatch is None:
        return None
    name = f"{destination['projectId']}:{destination['datasetId']}.{destination['tableId']}"
    return f"Provided Schema does not match Table {name}. {mismatch}."


def _took(state: FakeBigQuery, load: dict[str, Any], upload: bytes) -> None:
    """A load job's effects: its new columns, and the rows of distribution_metadata."""
    destination = load["destinationTable"]
    table = destination["tableId"]
    if table in state.tables and "schema" in load:
        state.tables[table] = _merged(state.tables[table], load["schema"]["fields"])
    if table == "distribution_metadata":
        rows = [json.loads(line) for line in upload.splitlines() if line.strip()]
        state.distributions.setdefault(destination["datasetId"], []).extend(rows)


_FILENAMES = re.compile(r"SELECT filename FROM `[^.`]+\.([^.`]+)\.distribution_metadata`")


def _answer(state: FakeBigQuery, query: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Schema and rows for a query job: the warehouse's filename query, else nothing."""
    found = _FILENAMES.match(query["query"])
    if found is None:
        return [], []
    with state.lock:
        names = [row["filename"] for row in state.distributions.get(found.group(1), [])]
    for parameter in query.get("queryParameters", []):
        if parameter["name"] == "names":
            wanted = {item["value"] for item in parameter["parameterValue"]["arrayValues"]}
            names = [name for name in names if name in wanted]
    schema = [{"name": "filename", "type": "STRING", "mode": "NULLABLE"}]
    return schema, [{"f": [{"v": name}]} for name in names]


@contextmanager
def fake_bigquery(project: str) -> Iterator[tuple[FakeBigQuery, bigquery.Client]]:
    """The fake and a client wired to it with anonymous credentials (never Google's)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    state = FakeBigQuery()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    client = bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )
    try:
        yield state, client
    finally:
        client.close()  # type: ignore[no-untyped-call]
        server.shutdown()
        server.server_close()
