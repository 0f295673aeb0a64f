"""`files upload` of files far larger than an upload should hold: read from disk a block at a
time, streamed to the store, and refused when the bytes change on the way.

The large files are wheels with one stored member that does not compress, written to the
test's directory a MiB at a time (``samples.write_large_wheel``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import threading
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pythonhosted.catalog import project_records
from pythonhosted.cli import main
from pythonhosted.files.upload import SourceChanged, TooLarge, upload
from pythonhosted.samples import write_large_wheel
from pythonhosted.storage import Store, open_store
from pythonhosted.web.server import running
from pythonhosted.web.types import Receive, Scope, Send
from support.edge import EdgeFactory
from support.measured import run_measured
from support.passthrough import forward
from support.processes import PYTHONHOSTED, spawn, wait_until

MiB = 2**20
PROJECT = "big-wheel"
WHEEL = "big_wheel-1.0-py3-none-any.whl"
TAIL = 1000
SIZES = {"file": 128 * MiB, "s3": 96 * MiB}
CHANGED = "error: big_wheel-1.0-py3-none-any.whl: the file changed while it was being uploaded\n"


def large_wheel(directory: Path, payload: int, version: str = "1.0") -> Path:
    return write_large_wheel(directory, PROJECT, version, payload)


def digests(path: Path) -> dict[str, Any]:
    found = {"blake2b_256": hashlib.blake2b(digest_size=32), "sha256": hashlib.sha256()}
    found["md5"] = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        while block := file.read(MiB):
            for digest in found.values():
                digest.update(block)
    return {"size": path.stat().st_size} | {name: d.hexdigest() for name, d in found.items()}


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_large_wheel_is_stored_and_served_whole_in_bounded_memory(
    request: pytest.FixtureRequest, tmp_path: Path, edge: EdgeFactory, kind: str
) -> None:
    """The command's peak RSS grows by far less than the file (before: by the whole file, it
    was read into memory), measured against a tiny upload's run the same way."""
    store = f"file://{tmp_path}/store" if kind == "file" else request.getfixturevalue("s3_url")
    path = large_wheel(tmp_path / "dist", SIZES[kind])
    tiny = large_wheel(tmp_path / "dist", 0, version="0.1")
    upload_args = ["files", "upload", "--store", store]
    base_code, _, base_err, baseline = run_measured([*upload_args, str(tiny)], tmp_path)
    code, out, err, peak = run_measured([*upload_args, str(path)], tmp_path)
    expected = digests(path)
    size = expected["size"]
    with path.open("rb") as file:
        file.seek(size - TAIL)
        last_bytes = file.read()
    records = asyncio.run(project_records(open_store(store), PROJECT))
    with edge(primary=store) as url, httpx.Client(base_url=url, timeout=60) as client:
        served = hashlib.blake2b(digest_size=32)
        with client.stream("GET", out.strip()) as response:
            for chunk in response.iter_bytes():
                served.update(chunk)
        tail = client.get(out.strip(), headers={"Range": f"bytes={size - TAIL}-"})
    blake2 = expected["blake2b_256"]
    assert (base_code, base_err, code, err) == (0, "", 0, "")
    assert out == f"/packages/{blake2[:2]}/{blake2[2:4]}/{blake2[4:]}/{WHEEL}\n"
    [record] = [record for record in records if record.version == "1.0"]
    assert {name: getattr(record, name) for name in expected} == expected
    assert (record.path, record.requires_python) == (out.strip(), ">=3.9")
    assert (response.status_code, served.hexdigest()) == (200, blake2)
    assert (tail.status_code, tail.content) == (206, last_bytes)
    assert peak - baseline < size / 3, f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f}"


class HeldS3:
    """Passes requests through to moto, holding the first multipart upload's creation (the
    streamed put's first request) until ``release`` is set.

    An abort (``DELETE ?uploadId=``) waits for the part uploads in flight to end first:
    moto answers 500 to an abort that meets a part being written (seen at load 15), where S3
    takes both (and asks a client that wants every part gone to abort again after)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.holding = threading.Event()
        self.release = threading.Event()
        self._in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        creates = scope["method"] == "POST" and scope["query_string"] in (b"uploads", b"uploads=")
        if creates and not self.holding.is_set():
            self.holding.set()
            await asyncio.to_thread(self.release.wait, 60)
        if scope["method"] == "DELETE" and b"uploadId=" in scope["query_string"]:
            async with asyncio.timeout(60):
                while self._in_flight:
                    await asyncio.sleep(0.01)
        self._in_flight += 1
        try:
            await forward(self.upstream, scope, receive, send)
        finally:
            self._in_flight -= 1


def test_a_file_rewritten_while_it_is_streamed_is_refused_and_nothing_is_stored(
    tmp_path: Path, moto_endpoint: str, s3_url: str
) -> None:
    """The store holds the put's first request while the test rewrites the file's last MiB in
    place (same size: only the digest of what was streamed can tell). The upload had hashed
    the file and read its metadata by then, and has streamed at most a few parts of it."""
    path = large_wheel(tmp_path / "dist", 48 * MiB)
    held = HeldS3(moto_endpoint)
    bucket = s3_url.split("?", 1)[0].removeprefix("s3://")
    with running(held) as endpoint:
        store = f"s3://{bucket}?endpoint={endpoint}&allow_http=true"
        process = spawn(
            [*PYTHONHOSTED, "files", "upload", "--store", store, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_until(held.holding.is_set, timeout=60)
        with path.open("r+b") as file:
            file.seek(-MiB, os.SEEK_END)
            file.write(random.Random(1).randbytes(MiB))
        held.release.set()
        out, err = process.communicate(timeout=60)
    pending = httpx.get(f"{moto_endpoint}/{bucket}?uploads").text
    assert (process.returncode, out, err.decode()) == (1, b"", CHANGED)
    assert asyncio.run(open_store(s3_url).list()) == []  # no object, no catalog record
    assert "<UploadId>" not in pending  # the multipart upload was aborted


class RewritingStore:
    """A store that rewrites the file being uploaded just before its bytes are streamed."""

    def __init__(self, store: Store, path: Path) -> None:
        self._store = store
        self.path = path

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], **options: Any) -> None:
        self.path.write_bytes(self.path.read_bytes().replace(b"Tag: py3", b"Tag: py2"))
        await self._store.put_stream(key, chunks, **options)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_a_small_file_rewritten_before_it_is_stored_is_refused(tmp_path: Path) -> None:
    """A file of one part (one whole put, in a local directory): refused the same way."""
    path = large_wheel(tmp_path / "dist", 0)
    store = open_store(f"file://{tmp_path}/store")
    with pytest.raises(SourceChanged) as refused:
        asyncio.run(upload(RewritingStore(store, path), WHEEL, path))  # type: ignore[arg-type]
    assert f"error: {refused.value}\n" == CHANGED
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []


def test_the_size_limit_counts_the_bytes_read_not_the_size_stat_gave(tmp_path: Path) -> None:
    """``upload_max_bytes`` is enforced while the file is read: the command took the size
    from ``stat`` before reading, so a file that grew past the limit meanwhile was read to its
    end and stored (and one that never stopped growing, read for ever). The first pass stops
    one block past the limit; nothing is stored."""
    path = large_wheel(tmp_path / "dist", 3 * MiB)
    store = open_store(f"file://{tmp_path}/store")
    limit = path.stat().st_size - 1
    with pytest.raises(TooLarge) as refused:
        asyncio.run(upload(store, WHEEL, path, max_bytes=limit))
    assert str(refused.value) == f"{WHEEL}: larger than {limit} bytes"
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []
    assert asyncio.run(upload(store, WHEEL, path, max_bytes=limit + 1)).size == limit + 1


def test_a_pipe_is_refused_without_being_read(tmp_path: Path) -> None:
    """The upload reads a file three times; a pipe can be read once (before, the command waited
    for a writer, and would have stored whatever came)."""
    pipe = tmp_path / WHEEL
    os.mkfifo(pipe)
    result = CliRunner().invoke(
        main, ["files", "upload", "--store", f"file://{tmp_path}/store", str(pipe)]
    )
    assert (result.exit_code, result.output) == (1, f"error: {pipe}: not a regular file\n")
