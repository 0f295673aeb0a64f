"""A fake BigQuery HTTP API on 127.0.0.1, enough for load jobs: a test double, not BigQuery.

It accepts multipart job uploads (``POST /upload/bigquery/v2/projects/P/jobs``), answers 409
for a job ID it has seen (as BigQuery does), serves ``GET .../jobs/ID``, and records every
request so tests can check the contract: job configuration, job IDs and uploaded rows.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery


class FakeBigQuery:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []


def _handler(state: FakeBigQuery) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self.requests_log()
            length = int(self.headers["content-length"])
            body = self.rfile.read(length)
            boundary = self.headers["content-type"].split("boundary=", 1)[1].strip("'\"")
            parts = body.split(b"--" + boundary.encode())[1:3]
            resource = json.loads(parts[0].split(b"\r\n\r\n", 1)[1])
            upload = parts[1].split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
            job_id = resource["jobReference"]["jobId"]
            if job_id in state.jobs:
                self._reply(
                    409,
                    {
                        "error": {
                            "code": 409,
                            "message": f"Already Exists: Job {job_id}",
                            "errors": [{"reason": "duplicate"}],
                        }
                    },
                )
                return
            rows = upload.count(b"\n")
            resource["status"] = {"state": "DONE"}
            resource["statistics"] = {"load": {"outputRows": str(rows)}}
            state.jobs[job_id] = resource
            state.uploads[job_id] = upload
            self._reply(200, resource)

        def do_GET(self) -> None:
            self.requests_log()
            job_id = self.path.split("?", 1)[0].rsplit("/", 1)[1]
            if job_id not in state.jobs:
                self._reply(404, {"error": {"code": 404, "message": "Not found"}})
                return
            self._reply(200, state.jobs[job_id])

        def requests_log(self) -> None:
            state.requests.append((self.command, self.path))

    return Handler


@contextmanager
def fake_bigquery(project: str) -> Iterator[tuple[FakeBigQuery, bigquery.Client]]:
    """The fake and a client wired to it with anonymous credentials (never Google's)."""
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
