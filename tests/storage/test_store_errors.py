"""Operator messages for stores: every store error names the configured store (never a
secret) and its cause in one line, and a store at a custom endpoint never asks a cloud
metadata service for credentials unless its URL says ``metadata_credentials=true``.

The metadata services are a loopback listener here: obstore's metadata addresses
(``AWS_METADATA_ENDPOINT``, ``GCE_METADATA_HOST``/``_IP``/``_ROOT``) point at it, so a probe
that would go to 169.254.169.254 is counted instead, and the opted-in cases prove it counts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pythonhosted.storage import open_store
from pythonhosted.web.server import free_port
from support.edge import SAMPLES

SDIST = SAMPLES["sdist"]
NO_S3_CREDENTIALS = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add skip_signature=true (anonymous) "
    "or metadata_credentials=true to the URL"
)
NO_GCS_CREDENTIALS = (
    "add service_account=/path/key.json to the URL or set GOOGLE_APPLICATION_CREDENTIALS, "
    "or add metadata_credentials=true"
)


class MetadataService:
    """A loopback listener that counts connections and closes each at once."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.count += 1
            connection.close()

    def connections(self) -> int:
        """Connections so far; call after the client process has exited (every connection it
        made is then accepted or waiting in the backlog, which is drained here)."""
        self._stop.set()
        self._thread.join()
        self.sock.setblocking(False)
        while True:
            try:
                self.sock.accept()[0].close()
            except BlockingIOError:
                return self.count
            self.count += 1

    def environment(self) -> dict[str, str]:
        address = f"127.0.0.1:{self.port}"
        return {
            "AWS_METADATA_ENDPOINT": f"http://{address}",
            "GCE_METADATA_HOST": address,
            "GCE_METADATA_IP": address,
            "GCE_METADATA_ROOT": address,
        }


@pytest.fixture
def metadata() -> Iterator[MetadataService]:
    service = MetadataService()
    yield service
    service.connections()
    service.sock.close()


def run_cli(
    tmp_path: Path, *args: str, env: dict[str, str], prefix: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    """``python -m pythonhosted ARGS`` with no cloud credentials but ``env``."""
    clean = ("AWS_", "GOOGLE_", "GCE_", "PYTHONHOSTED_")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(clean)}
    environ.update(HOME=str(tmp_path / "home"), PYTHONHOSTED_DATA_DIR=str(tmp_path / "data"))
    environ.update(env)
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "pythonhosted", *args],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def sdist(tmp_path: Path) -> str:
    path = tmp_path / SDIST.filename
    path.write_bytes(SDIST.data)
    return str(path)


def test_s3_endpoint_without_credentials_never_asks_metadata(
    tmp_path: Path, metadata: MetadataService, moto_endpoint: str, sdist: str
) -> None:
    url = f"s3://bucket/packages?endpoint={moto_endpoint}&allow_http=true"
    result = run_cli(tmp_path, "files", "upload", "--store", url, sdist, env=metadata.environment())
    line = f"no credentials for s3://bucket/packages (endpoint {moto_endpoint}): "
    assert result == (2, "", f"Error: {line}{NO_S3_CREDENTIALS}\n")
    assert metadata.connections() == 0


def test_gs_endpoint_without_credentials_never_asks_metadata(
    tmp_path: Path, metadata: MetadataService, gcs_endpoint: str
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<p>docs</p>")
    url = f"gs://docs?endpoint={gcs_endpoint}&allow_http=true"
    args = ("docs", "upload", "demo", str(tmp_path / "site"), "--store", url)
    result = run_cli(tmp_path, *args, env=metadata.environment())
    line = f"no credentials for gs://docs (endpoint {gcs_endpoint}): {NO_GCS_CREDENTIALS}"
    assert result == (2, "", f"Error: {line}\n")
    assert metadata.connections() == 0


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_metadata_credentials_opt_in_asks_metadata(
    tmp_path: Path, metadata: MetadataService, scheme: str, sdist: str
) -> None:
    """The control: with the opt-in the same command does ask (so the listener sees probes),
    and the failure is one line naming the store."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    url = f"{scheme}://bucket?endpoint={endpoint}&allow_http=true&metadata_credentials=true"
    code, out, err = run_cli(
        tmp_path, "files", "upload", "--store", url, sdist, env=metadata.environment()
    )
    assert (code, out) == (1, "")
    file = Path(sdist).name
    assert err.startswith(f"error: {file}: store: {scheme}://bucket (endpoint {endpoint}): ")
    assert err.count("\n") == 1
    assert metadata.connections() >= 1


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("files", "serve", "--primary", "{url}", "--bind", "127.0.0.1:{port}"), 2),
        (("linehaul", "ingest", "--once", "--logs", "{url}"), 1),
        (("stats", "--coverage", "--logs", "{url}"), 1),
    ],
)
def test_services_refuse_to_start_in_one_line(
    tmp_path: Path, metadata: MetadataService, args: tuple[str, ...], status: int
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    url = f"s3://logs?endpoint={endpoint}&allow_http=true"
    argv = [arg.format(url=url, port=free_port()) for arg in args]
    code, _, err = run_cli(tmp_path, *argv, env=metadata.environment())
    line = f"no credentials for s3://logs (endpoint {endpoint}): {NO_S3_CREDENTIALS}"
    assert (code, err) == (status, f"Error: {line}\n")
    assert metadata.connections() == 0


def test_store_failures_name_the_store(tmp_path: Path, sdist: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens
    url = f"s3://bucket/pre?endpoint={endpoint}&allow_http=true"
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"}
    code, out, err = run_cli(tmp_path, "files", "upload", "--store", url, sdist, env=keys)
    assert (code, out) == (1, "")
    store = f"s3://bucket/pre (endpoint {endpoint})"
    assert err.startswith(f"error: {Path(sdist).name}: store: {store}: Generic S3 error: ")
    assert err.endswith("error sending request\n") and err.count("\n") == 1
    assert "testing-secret" not in err
    half = {"AWS_ACCESS_KEY_ID": "testing"}
    result = run_cli(tmp_path, "files", "upload", "--store", url, sdist, env=half)
    assert result == (
        2,
        "",
        f"Error: s3://bucket/pre (endpoint {endpoint}): Generic S3 error: "
        "Missing SecretAccessKey\n",
    )


def test_endpoint_user_info_is_not_shown() -> None:
    with pytest.raises(ValueError) as refused:
        _open_without_credentials("s3://b?endpoint=http://user:hunter2@127.0.0.1:9000")
    assert str(refused.value) == (
        f"no credentials for s3://b (endpoint http://127.0.0.1:9000): {NO_S3_CREDENTIALS}"
    )


def test_anonymous_and_keyed_stores_open_without_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert open_store("s3://b?endpoint=http://127.0.0.1:1&skip_signature=true").label == (
        "s3://b (endpoint http://127.0.0.1:1)"
    )
    with pytest.raises(ValueError, match="no credentials for s3://b: "):
        open_store("s3://b?metadata_credentials=false")  # no endpoint, but opted out
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    assert open_store("s3://b?endpoint=http://127.0.0.1:1").label == (
        "s3://b (endpoint http://127.0.0.1:1)"
    )


def _open_without_credentials(url: str) -> None:
    saved = {n: os.environ.pop(n) for n in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    try:
        open_store(url)
    finally:
        os.environ.update(saved)


def test_store_directory_blocked_by_a_file(tmp_path: Path, sdist: str) -> None:
    (tmp_path / "afile").write_text("")
    blocked = tmp_path / "afile" / "store"
    result = run_cli(tmp_path, "files", "upload", "--store", f"file://{blocked}", sdist, env={})
    assert result == (2, "", f"Error: cannot create store directory {blocked}: Not a directory\n")
    data = tmp_path / "afile" / "data"
    assert run_cli(tmp_path, "serve", "--data-dir", str(data), env={}) == (
        2,
        "",
        f"Error: cannot write to {data} (data_dir): Not a directory\n",
    )


@pytest.fixture
def without_root_override() -> tuple[str, ...]:
    """A command prefix that makes file permissions apply (root ignores them otherwise)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    caps = "-dac_override,-dac_read_search"
    return (setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}")


def test_read_only_store_directory(
    tmp_path: Path, sdist: str, without_root_override: tuple[str, ...]
) -> None:
    store = tmp_path / "readonly"
    store.mkdir()
    store.chmod(0o555)
    url = f"file://{store}"
    args = ("files", "upload", "--store", url, sdist)
    code, out, err = run_cli(tmp_path, *args, env={}, prefix=without_root_override)
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {Path(sdist).name}: store: {url}: Generic LocalFileSystem error")
    assert err.endswith(": Permission denied (os error 13)\n") and err.count("\n") == 1
    data = store / "data"
    result = run_cli(
        tmp_path, "serve", "--data-dir", str(data), env={}, prefix=without_root_override
    )
    assert result == (2, "", f"Error: cannot write to {data} (data_dir): Permission denied\n")
