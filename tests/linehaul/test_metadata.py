"""distribution_metadata: a row per uploaded file, field by field what was uploaded, added
exactly once by publish (SIGKILLed at random moments, again and again), and the backfill of
stores uploaded to before there was a queue."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from pythonhosted.catalog import FileRecord, get_record, put_record, record_key
from pythonhosted.cli import main
from pythonhosted.files.upload import UPLOADED_VIA, UploadRefused, upload
from pythonhosted.linehaul.publish import publish_with
from pythonhosted.samples import build_sdist, build_wheel
from pythonhosted.storage import DirectoryStore, open_store
from pythonhosted.warehouse.clickhouse.engines import ChdbEngine
from pythonhosted.warehouse.metadata import QUEUE, enqueue
from support.processes import PYTHONHOSTED, spawn, wait_until

MULTI = [
    "Author: Jane Doe",
    "Author-email: Jane Doe <jane@example.org>, bob@example.net",
    "Maintainer-email: Team <team@corp.example.com>",
    "License-Expression: MIT OR Apache-2.0",
    "License-File: LICENSE",
    "License-File: NOTICE",
    "Keywords: demo,sample,  test",
    "Classifier: Programming Language :: Python :: 3",
    "Classifier: License :: OSI Approved :: MIT License",
    "Platform: linux",
    "Platform: win32",
    "Supported-Platform: RedHat 7.2",
    "Home-page: https://example.org/demo",
    "Project-URL: Source, https://github.com/demo-org/demo",
    "Project-URL: Documentation, https://demo.readthedocs.io/",
    "Provides-Extra: cli",
    "Provides-Extra: docs",
    "Requires-Dist: click>=8; extra == 'cli'",
    "Requires-External: libfoo (>=1.0)",
    "Provides-Dist: demo_extras",
    "Obsoletes-Dist: old_demo",
    "Dynamic: Classifier",
    "Description-Content-Type: text/markdown",
]
DESCRIPTION = "# Demo\n\nLong text é " + "x" * 50_000  # over the 40,000 bytes PyPI keeps


def _rows(path: Path, order: str = "filename") -> list[dict[str, Any]]:
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute(f"SELECT * FROM distribution_metadata ORDER BY {order}")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_rows_are_what_was_uploaded(tmp_path: Path) -> None:
    """A wheel and an sdist with every multi-valued field: each row, field by field, and
    the upload's re-upload and the publish's retry add nothing."""
    store = open_store(f"file://{tmp_path}/files")
    requires = ["requests>=2.0,<3"]
    wheel = build_wheel(
        "Demo-Pkg", "2.0", requires=requires, metadata=MULTI, description=DESCRIPTION
    )
    sdist = build_sdist(
        "Demo-Pkg", "2.0", requires=requires, metadata=MULTI, description=DESCRIPTION
    )
    records = [asyncio.run(upload(store, *dist)) for dist in (wheel, sdist)]
    asyncio.run(upload(store, *wheel))  # a re-upload: the same row queued again
    warehouse = f"duckdb://{tmp_path}/w.duckdb"
    results = open_store(f"file://{tmp_path}/results")
    first = asyncio.run(publish_with(results, warehouse, batch_files=10, uploads=store))
    assert first.distributions == 2
    asyncio.run(upload(store, *sdist))
    again = asyncio.run(publish_with(results, warehouse, batch_files=10, uploads=store))
    assert again.distributions == 0
    assert asyncio.run(store.list(QUEUE)) == []

    rows = _rows(tmp_path / "w.duckdb")
    assert [row["filename"] for row in rows] == ["demo_pkg-2.0-py3-none-any.whl", sdist[0]]
    for row, record, (filename, data) in zip(rows, records, (wheel, sdist), strict=True):
        row = dict(row)
        uploaded = row.pop("upload_time")
        assert uploaded.isoformat() + "Z" == record.upload_time.replace("+00:00", "Z")
        wheel_file = filename.endswith(".whl")
        assert row == {
            **_MULTI_ROW,
            "filename": filename,
            "size": len(data),
            "path": record.path.removeprefix("/packages/"),
            "python_version": "py3" if wheel_file else "source",
            "packagetype": "bdist_wheel" if wheel_file else "sdist",
            "md5_digest": _md5(data),
            "sha256_digest": hashlib.sha256(data).hexdigest(),
            "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
        }
        assert (record.md5, record.sha256) == (row["md5_digest"], row["sha256_digest"])


_MULTI_ROW: dict[str, Any] = {  # what every row of a file with MULTI and DESCRIPTION says
    "metadata_version": "2.1",
    "name": "Demo-Pkg",
    "version": "2.0",
    "summary": "Sample package Demo-Pkg",
    "description": DESCRIPTION.encode()[:40_000].decode("utf-8", "ignore"),
    "description_content_type": "text/markdown",
    "author": "Jane Doe",
    "author_email": "Jane Doe <jane@example.org>, bob@example.net",
    "maintainer": None,
    "maintainer_email": "Team <team@corp.example.com>",
    "license": None,
    "license_expression": "MIT OR Apache-2.0",
    "license_files": ["LICENSE", "NOTICE"],
    "keywords": "demo, sample, test",
    "classifiers": [
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
    ],
    "platform": ["linux", "win32"],
    "home_page": "https://example.org/demo",
    "download_url": None,
    "requires_python": ">=3.8",
    "requires": [],
    "provides": [],
    "obsoletes": [],
    "requires_dist": ["requests<3,>=2.0", 'click>=8; extra == "cli"'],
    "provides_dist": ["demo_extras"],
    "obsoletes_dist": ["old_demo"],
    "requires_external": ["libfoo (>=1.0)"],
    "project_urls": [
        "Source, https://github.com/demo-org/demo",
        "Documentation, https://demo.readthedocs.io/",
    ],
    "uploaded_via": UPLOADED_VIA,
    "comment_text": None,
    "has_signature": False,
    "provides_extra": ["cli", "docs"],
    "supported_platform": ["RedHat 7.2"],
    "dynamic": ["Classifier"],
}


def _queue(store_url: str, files: int, first: int = 0) -> None:
    """``files`` rows in the upload queue, as uploads leave them (without building files),
    numbered from ``first``."""
    store = open_store(store_url)
    metadata = b"Metadata-Version: 2.1\nName: flood\nVersion: 1.0\nClassifier: A :: B\n\n"

    async def fill() -> None:
        for number in range(first, first + files):
            record = FileRecord(
                filename=f"flood-{number}.tar.gz",
                path=f"/packages/aa/bb/{number:060d}/flood-{number}.tar.gz",
                project="flood",
                version="1.0",
                package_type="sdist",
                python_version="source",
                size=number,
                sha256="0" * 64,
                blake2b_256=f"{number:064d}",
                upload_time="2026-01-01T00:00:00Z",
                md5="1" * 32,
                uploaded_via="test",
            )
            await enqueue(store, record, metadata)

    asyncio.run(fill())


def _publish(files: str, warehouse: str, results: str, batch: int = 150) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONHOSTED_FILES__PRIMARY": files,
        "PYTHONHOSTED_LINEHAUL__PUBLISH_BATCH_FILES": str(batch),
    }
    command = ["linehaul", "publish", "--once", "--results", results, "--warehouse", warehouse]
    return spawn(
        [*PYTHONHOSTED, *command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _draining(process: subprocess.Popen[bytes], left: Callable[[], int], before: int) -> bool:
    return process.poll() is not None or left() < before


@pytest.mark.parametrize(
    ("kind", "queued", "batch", "rounds"), [("duckdb", 1500, 75, 8), ("chdb", 600, 50, 4)]
)
@pytest.mark.long
def test_each_upload_is_one_row_after_sigkills_of_publish(
    tmp_path: Path, kind: str, queued: int, batch: int, rounds: int
) -> None:
    """Publish killed at random moments while it drains the queue (between a batch's load
    and the deletes of its queue objects, inside a load, ...): in the end every queued
    file has exactly one row and the queue is empty. Into DuckDB and into ClickHouse (chDB:
    each start of publish imports chDB, which takes seconds, so fewer rounds, and smaller
    batches so that each round is killed with batches still to go)."""
    rng = random.Random(23)
    files, results = f"file://{tmp_path}/files", f"file://{tmp_path}/results"
    warehouse = f"duckdb://{tmp_path}/w.duckdb" if kind == "duckdb" else f"chdb://{tmp_path}/ch"
    _queue(files, queued)
    store = open_store(files)
    assert isinstance(store, DirectoryStore)
    queue = store.local_path(QUEUE)

    def left() -> int:
        """The queue objects still there, counted in the store's directory: the poll below
        asks every 20 ms while publish runs, and a listing of 1,500 objects through the store
        costs 18 ms of CPU (0.6 ms so); the end's check lists through the store."""
        try:
            return sum(1 for _ in os.scandir(queue))
        except FileNotFoundError:  # the last delete may take the directory with it
            return 0

    kills = 0
    for _ in range(2 * rounds):
        before = left()
        if before == 0:  # a round drained the queue before its kill (a slow poll on a busy
            if kills >= 2:  # machine): the kills still wanted get new rows to cut into
                break
            _queue(files, queued, first=queued)
            queued *= 2
            before = left()
        process = _publish(files, warehouse, results, batch)
        draining = functools.partial(_draining, process, left, before)
        wait_until(draining, timeout=60)  # it has started taking rows (or is done)
        time.sleep(rng.uniform(0, 0.05))  # a random moment of the drain to kill it at
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)
        if kills >= rounds:
            break
    final = _publish(files, warehouse, results, batch)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    assert kills >= 2
    assert left() == 0
    assert asyncio.run(store.list(QUEUE)) == []
    sql = (
        "SELECT count(*), count(DISTINCT filename), min(size), max(size) FROM distribution_metadata"
    )
    if kind == "duckdb":
        with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
            counted = con.execute(sql).fetchone()
    else:
        engine = ChdbEngine(tmp_path / "ch")
        try:
            (counted,) = engine.rows(sql)
        finally:
            engine.close()
    assert counted == (queued, queued, 0, queued - 1)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["linehaul", "metadata", *args])


def test_backfill_of_a_store_uploaded_to_before(tmp_path: Path) -> None:
    """Records written before the queue (no MD5, no uploaded_via, nothing queued) and a
    file whose metadata cannot be read: --backfill gives each its row (hashing the files it
    must), once; without --backfill only the queue is read."""
    files = f"file://{tmp_path}/files"
    store = open_store(files)
    wheel, sdist = build_wheel("old", "1.0"), build_sdist("old", "1.1")
    records = [asyncio.run(upload(store, *dist)) for dist in (wheel, sdist)]
    asyncio.run(_as_before(store, records))
    junk = dataclasses.replace(
        records[1], filename="old-0.1.tar.gz", path=records[1].path.replace("1.1", "0.1")
    )
    asyncio.run(store.put(junk.path[1:], b"not an archive"))
    asyncio.run(put_record(store, junk))
    warehouse = f"duckdb://{tmp_path}/w.duckdb"

    queued = _cli("--store", files, "--warehouse", warehouse)
    assert (queued.exit_code, queued.stderr) == (
        0,
        "linehaul metadata: 0 distribution rows added, 0 already there\n",
    )
    backfilled = _cli("--backfill", "--store", files, "--warehouse", warehouse)
    assert backfilled.exit_code == 0, backfilled.output
    assert backfilled.stderr.endswith(
        "linehaul metadata: 3 distribution rows added, 0 already there\n"
    )
    assert "old-0.1.tar.gz: no readable core metadata" in backfilled.stderr
    again = _cli("--backfill", "--store", files, "--warehouse", warehouse)
    assert again.stderr == "linehaul metadata: 0 distribution rows added, 0 already there\n"

    rows = {row["filename"]: row for row in _rows(tmp_path / "w.duckdb")}
    assert sorted(rows) == ["old-0.1.tar.gz", "old-1.0-py3-none-any.whl", "old-1.1.tar.gz"]
    for record, dist in zip(records, (wheel, sdist), strict=True):
        row = rows[record.filename]
        assert (row["md5_digest"], row["uploaded_via"]) == (_md5(dist[1]), None)
        assert (row["name"], row["summary"]) == ("old", "Sample package old")
    assert {key: rows["old-0.1.tar.gz"][key] for key in ("name", "version", "summary")} == {
        "name": "old",
        "version": "1.1",  # the record's own (copied from 1.1's above)
        "summary": None,
    }


async def _as_before(store: Any, records: list[FileRecord]) -> None:
    """Make the records look as an older release wrote them, and empty the queue."""
    for record in records:
        old = dataclasses.replace(record, md5=None, uploaded_via=None)
        await store.put(record_key(old.project, old.filename), old.to_json())
        assert await get_record(store, old.project, old.filename) == old
    for item in await store.list(QUEUE):
        await store.delete(item.key)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_metadata_command_errors(tmp_path: Path) -> None:
    missing = CliRunner().invoke(
        main, ["linehaul", "metadata"], env={"PYTHONHOSTED_FILES__PRIMARY": ""}
    )
    assert missing.exit_code == 2
    assert "no files store: pass --store URL or set PYTHONHOSTED_FILES__PRIMARY" in missing.stderr
    bad = _cli("--store", "nope://x", "--warehouse", f"duckdb://{tmp_path}/w.duckdb")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("Error: ")
    assert len(bad.stderr.splitlines()) == 1


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_an_upload_queues_its_row_after_its_record(tmp_path: Path, kind: str) -> None:
    store = open_store(f"file://{tmp_path}/files")
    dist = build_wheel("q", "1.0") if kind == "wheel" else build_sdist("q", "1.0")
    record = asyncio.run(upload(store, *dist))
    assert [item.key for item in asyncio.run(store.list(QUEUE))] == [
        f"{QUEUE}{record.filename}.json"
    ]


def test_yank_and_delete_leave_the_rows_as_pypi_does(tmp_path: Path) -> None:
    """PyPI only ever inserts into distribution_metadata (at upload, and a sync of files it
    lacks): a yank, an unyank and a delete change the catalog, not the rows; a deleted file's
    name cannot be uploaded again (PyPI: "This filename has already been used")."""
    files = f"file://{tmp_path}/files"
    store = open_store(files)
    wheel, sdist = build_wheel("kept", "1.0"), build_sdist("kept", "1.0")
    for dist in (wheel, sdist):
        asyncio.run(upload(store, *dist))
    warehouse = f"duckdb://{tmp_path}/w.duckdb"
    assert _cli("--store", files, "--warehouse", warehouse).exit_code == 0
    before = _rows(tmp_path / "w.duckdb")
    assert [row["filename"] for row in before] == [wheel[0], sdist[0]]

    def files_cli(*args: str) -> None:
        env = {"PYTHONHOSTED_FILES__PRIMARY": files, "PYTHONHOSTED_FILES__PURGE_URLS": "[]"}
        done = CliRunner().invoke(main, ["files", *args], env=env)
        assert done.exit_code == 0, done.output

    files_cli("yank", "kept==1.0", "--reason", "broken")
    files_cli("unyank", "kept==1.0")
    files_cli("yank", "kept==1.0")
    files_cli("delete", "--yes", wheel[0])
    other = build_wheel("kept", "1.0", module_source="CHANGED = True\n")
    assert other[0] == wheel[0] and other[1] != wheel[1]
    with pytest.raises(UploadRefused, match="used by a deleted file; use a different version"):
        asyncio.run(upload(store, *other))
    queued = _cli("--store", files, "--warehouse", warehouse)
    assert queued.stderr == "linehaul metadata: 0 distribution rows added, 0 already there\n"
    backfilled = _cli("--backfill", "--store", files, "--warehouse", warehouse)
    assert backfilled.stderr == "linehaul metadata: 0 distribution rows added, 0 already there\n"
    assert _rows(tmp_path / "w.duckdb") == before
