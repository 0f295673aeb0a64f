"""The operator's commands ride over the 500s S3 answers now and then, and stop after a few.

S3 asks its clients to retry a 500 InternalError or a 503 SlowDown; an upload of a thousand
objects meets one now and then (moto answered one under a racing docs upload, and the whole
upload failed). The store here is moto behind a proxy that answers S3's 500 to the first PUT
of each object: before moto sees it (nothing written), or after moto stored it (the write
landed; only the answer was lost), where a create-only put's retry finds its own object.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from pythonhosted.catalog import project_records
from pythonhosted.storage import open_store
from pythonhosted.web.server import running
from support.conveyor import served_files
from support.edge import SAMPLES
from support.processes import PYTHONHOSTED, spawn
from support.s3_failures import FailingS3, Failure, through


def run(*argv: str) -> tuple[int, str, str]:
    """A command of the operator's, as its own process: exit code, stdout, stderr."""
    process = spawn([*PYTHONHOSTED, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=120)
    return process.returncode, out.decode(), err.decode()


def docs_site(root: Path, pages: int) -> dict[str, bytes]:
    files = {f"p{number:03d}.html": f"page {number}".encode() for number in range(pages)}
    files["index.html"] = b"front"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


@pytest.mark.parametrize("failure", ["refused", "landed"])
def test_docs_upload_retries_each_put_answered_500(
    tmp_path: Path, moto_endpoint: str, s3_url: str, failure: Failure
) -> None:
    site = docs_site(tmp_path / "site", 60)
    failing = FailingS3(moto_endpoint, "PUT", failure)
    with running(failing) as proxy:
        outcome = run(
            "docs", "upload", "--store", through(proxy, s3_url), "proj", str(tmp_path / "site")
        )
    assert outcome == (0, "proj: 61 files written, 0 old files removed\n", "")
    assert served_files(s3_url, "proj") == site
    # every page and the project's pointer: answered 500 once, then stored
    assert len(failing.seen) == len(site) + 1
    assert set(failing.seen.values()) == {2}


@pytest.mark.parametrize("failure", ["refused", "landed"])
def test_files_upload_retries_create_only_puts_answered_500(
    tmp_path: Path, moto_endpoint: str, s3_url: str, failure: Failure
) -> None:
    """The file, its metadata, its record and the indexes' change marker are create-only
    puts: the retry of one that landed is refused as existing, and the upload knows its own."""
    wheel = SAMPLES["wheel"]
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.data)
    failing = FailingS3(moto_endpoint, "PUT", failure)
    with running(failing) as proxy:
        outcome = run("files", "upload", "--store", through(proxy, s3_url), str(path))
    records = asyncio.run(project_records(open_store(s3_url), "demo-pkg"))
    assert [(record.filename, record.size) for record in records] == [
        (wheel.filename, len(wheel.data))
    ]
    assert outcome == (0, records[0].path + "\n", "")
    assert set(failing.seen.values()) == {2}
    # the file and its metadata, its record, the indexes' change marker, the backfill's entry
    folders = Counter(path.split("/")[2] for path in failing.seen)
    assert folders == {"packages": 2, "catalog": 1, "catalog-changes": 1, "metadata-queue": 1}


def test_a_store_that_keeps_answering_500_fails_the_command_in_one_line(
    tmp_path: Path, moto_endpoint: str, s3_url: str
) -> None:
    docs_site(tmp_path / "site", 4)
    failing = FailingS3(moto_endpoint, "PUT", "refused", failures=100)
    with running(failing) as proxy:
        store = through(proxy, s3_url)
        code, out, err = run("docs", "upload", "--store", store, "proj", str(tmp_path / "site"))
    assert (code, out) == (1, "")
    assert re.fullmatch(
        rf"Error: {re.escape(store.split('?')[0])} \(endpoint {re.escape(proxy)}\): Generic S3 "
        r"error: Error performing PUT \S+ in \S+, after 3 retries, .* 500 Internal Server Error: "
        r"<\?xml [^\n]*\n",
        err,
    ), err
    # the first try and three retries each, then the upload stopped
    assert set(failing.seen.values()) == {4}
