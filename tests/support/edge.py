"""Files-edge test data: sample distributions, seeding any store, raw HTTP requests."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pythonhosted.distributions import parse_filename, storage_key, wheel_metadata
from pythonhosted.files.upload import content_type_for, upload
from pythonhosted.samples import build_sdist, build_wheel, wheel_of_size
from pythonhosted.storage import open_store
from pythonhosted.web.server import Bind, wait_for_port
from support.processes import started

CLIENT_TIMEOUT = 60.0  # as every httpx client of the tests (conftest.py): a starved server's answer

EdgeFactory = Callable[..., AbstractContextManager[str]]


@dataclass(frozen=True)
class Sample:
    filename: str
    data: bytes
    path: str  # URL path on the edge

    @property
    def key(self) -> str:
        return self.path[1:]


WHEEL = build_wheel("Demo-Pkg", "1.0", module_source="DATA = " + repr("x" * 40_000) + "\n")
SDIST = build_sdist("demo-pkg", "1.0")


def _path_of(filename: str, data: bytes) -> str:
    return "/" + storage_key(hashlib.blake2b(data, digest_size=32).hexdigest(), filename)


SAMPLES = {
    "wheel": Sample(WHEEL[0], WHEEL[1], _path_of(*WHEEL)),
    "sdist": Sample(SDIST[0], SDIST[1], _path_of(*SDIST)),
}


def metadata_of(sample: Sample) -> bytes:
    """The wheel's METADATA, as the PEP 658 sidecar holds it."""
    return wheel_metadata(sample.data, parse_filename(sample.filename))


def seed(url: str, gcs_bucket: Any = None) -> None:
    """Put the samples into a store the way ``files upload`` does (GCS: via its JSON API)."""
    if gcs_bucket is None:
        store = open_store(url)
        for sample in SAMPLES.values():
            asyncio.run(upload(store, sample.filename, sample.data))
        return
    for sample in SAMPLES.values():
        dist = parse_filename(sample.filename)
        gcs_bucket.put(sample.key, sample.data, content_type_for(sample.filename), dist.metadata())
        if dist.package_type == "bdist_wheel":
            metadata = wheel_metadata(sample.data, dist)
            gcs_bucket.put(sample.key + ".metadata", metadata, "text/plain; charset=utf-8")


def raw_request(base_url: str, request_line: str, headers: str = "") -> tuple[int, bytes]:
    """Send bytes exactly as written (httpx would normalise the hostile paths away)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(f"{request_line}\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line = data.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), data


@contextlib.contextmanager
def edge_process(
    tmp_path: Path,
    primary: str,
    bind: Bind,
    workers: int = 1,
    stderr: int | None = subprocess.DEVNULL,
    settings: Mapping[str, str] | None = None,
    runner: Sequence[str] = (sys.executable, "-m", "pythonhosted"),
) -> Iterator[subprocess.Popen[bytes]]:
    """``pythonhosted files serve`` as a real process (logs under ``tmp_path``), once listening;
    its process group is gone when the block ends. ``stderr=subprocess.PIPE`` keeps its log
    to read after it exits; ``settings``: more ``PYTHONHOSTED_*`` variables; ``runner``: what
    runs the command line (e.g. a script that sets limits first). Its temporary files go
    under ``tmp_path`` too: a test that kills it with SIGKILL leaves them there (the purge
    journal's directory of ``--workers``), not in the suite's ``TMPDIR``."""
    private_tmp = tmp_path / "edge-tmp"
    private_tmp.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "TMPDIR": str(private_tmp),
        "PYTHONHOSTED_DATA_DIR": str(tmp_path / "data"),
        "PYTHONHOSTED_FILES__LOG_PERIOD": "3600",
        "PYTHONHOSTED_FILES__LOG_SPOOL_SYNC_INTERVAL": "0.2",
        **(settings or {}),
    }
    command = [*runner, "files", "serve", "--primary", primary]
    command += ["--logs", f"file://{tmp_path}/logs", "--bind", f"{bind.host}:{bind.port}"]
    command += ["--workers", str(workers)]
    with started(command, env=env, stderr=stderr) as process:
        wait_for_port(bind, timeout=60, process=process)
        yield process


def stored_wheel(url: str, name: str, size: int) -> Sample:
    """A wheel of about ``size`` bytes, uploaded to the store at ``url``."""
    filename, data = wheel_of_size(name, size)
    return Sample(filename, data, asyncio.run(upload(open_store(url), filename, data)).path)


def log_lines(log_dir: Path) -> list[str]:
    """Every line of every batch object (each must be a complete gzip member)."""
    lines: list[str] = []
    for path in sorted((log_dir / "downloads").rglob("*.log.gz")):
        lines += gzip.decompress(path.read_bytes()).decode().splitlines()
    return lines


def download_lines(log_dir: Path) -> list[tuple[str, str]]:
    """(served, download) line pairs; every served line right before its download line and
    nothing else in the log."""
    lines = log_lines(log_dir)
    pairs = list(zip(lines[::2], lines[1::2], strict=True))
    assert all(s.startswith("served|") and d.startswith("download|") for s, d in pairs), lines
    return pairs
