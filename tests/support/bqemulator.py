"""bqemulator (PyPI): a BigQuery emulator on DuckDB, started offline on loopback for tests.

It lives in an environment of its own (``.tools/bqemulator``, made by ``make
.tools/bqemulator/.installed``: it pins DuckDB 1.5, the project uses 2.x). At start it runs
DuckDB's ``INSTALL spatial``, which would download the extension unless it is in DuckDB's
extension directory already, so a ``HOME`` of the emulator's own gets the copy the
``duckdb-extension-spatial`` wheel ships. Ports are free ones on 127.0.0.1; the process has
its own process group (``support.processes.started``), killed on the way out.

Where it differs from BigQuery (each found here; the named fake,
``support/fake_bigquery.py``, stays for what it cannot show):

- it refuses the media part of google-cloud-bigquery's multipart upload, whose type the
  client sends as ``*/*`` (BigQuery takes it): :func:`emulator_client` makes the client send
  ``application/octet-stream``;
- its loader (DuckDB's ``read_json`` into ``TIMESTAMP``) refuses the timestamps linehaul
  writes, ``2021-01-07 20:54:54 +00:00`` (BigQuery takes them): :func:`emulator_rows` drops
  the ``+00:00``;
- it accepts a second load job with an ID it has seen (BigQuery answers 409), so
  exactly-once by job IDs is tested against the fake only;
- it does not report the table's day partitioning that the load job asked for;
- a load job's ``outputRows`` is the table's row count after the job, not the job's rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from pythonhosted.web.server import free_port
from support.processes import started, wait_until

if TYPE_CHECKING:  # the client library imports pandas: only the tests that use it pay
    from google.cloud import bigquery

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT = ROOT / ".tools" / "bqemulator"
DUCKDB_VERSION = "v1.5.5"


def ensure_installed() -> Path:
    """The emulator's command, installed by the Makefile's target if missing (one pytest
    worker at a time)."""
    command = ENVIRONMENT / "bin" / "bqemulator"
    if (ENVIRONMENT / ".installed").exists():
        return command
    ENVIRONMENT.parent.mkdir(exist_ok=True)
    with open(ENVIRONMENT.parent / ".bqemulator.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["make", "-s", ".tools/bqemulator/.installed"], cwd=ROOT, check=True)
    return command


def _offline_home(home: Path) -> Path:
    """A HOME whose DuckDB extension directory already holds the spatial extension."""
    shipped = next(
        (ENVIRONMENT / "lib").glob(
            f"python3*/site-packages/duckdb_extension_spatial/extensions/{DUCKDB_VERSION}/"
            "spatial.duckdb_extension"
        )
    )
    target = home / ".duckdb" / "extensions" / DUCKDB_VERSION / "linux_amd64"
    target.mkdir(parents=True)
    shutil.copy(shipped, target)
    return home


@contextlib.contextmanager
def running(workdir: Path, project: str) -> Iterator[str]:
    """The emulator on loopback for the block (its own process group, killed after); its
    REST endpoint."""
    command = ensure_installed()
    home = _offline_home(workdir / "home")
    rest, grpc = free_port(), free_port()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "NO_PROXY": "*"}
    argv = [str(command), "start", "--rest-port", str(rest), "--grpc-port", str(grpc)]
    endpoint = f"http://127.0.0.1:{rest}"
    log_path = workdir / "bqemulator.log"
    with (
        open(log_path, "wb") as log,
        started(
            [*argv, "--project", project, "--log-level", "warning"],
            env=env,
            cwd=workdir,
            stdout=log.fileno(),
            stderr=subprocess.STDOUT,
        ) as process,
    ):

        def answering() -> bool:
            if process.poll() is not None:
                pytest.fail(f"bqemulator exited: {log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{endpoint}/bigquery/v2/projects/{project}/datasets").is_success
            return False

        wait_until(answering, timeout=60, interval=0.1)
        yield endpoint


def emulator_client(
    endpoint: str, project: str, monkeypatch: pytest.MonkeyPatch
) -> bigquery.Client:
    """A client of the emulator, anonymous, sending uploads as ``application/octet-stream``."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery
    from google.cloud.bigquery import client as bigquery_client

    monkeypatch.setattr(bigquery_client, "_GENERIC_CONTENT_TYPE", "application/octet-stream")
    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


def emulator_rows(data: bytes) -> bytes:
    """linehaul's rows with timestamps the emulator's loader reads (no ``+00:00``)."""
    return data.replace(b' +00:00"', b'"')
