"""``files list`` over every project shows them as it reads them, a window of projects at a
time: over a million projects it had read the whole catalog, one task per record at once,
before its first line (2 GB and five minutes in, nothing shown; BENCHMARKS.md)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pythonhosted.catalog import FileRecord
from pythonhosted.cli import main
from pythonhosted.files.manage import PROJECTS_AHEAD, listing
from pythonhosted.storage import open_store
from support.catalogs import CountingReads, record, write_catalog
from support.processes import PYTHONHOSTED

# One worker makes the module's catalog (1,200 records, 4.9 s of setup at load 17) for the
# three tests, not each worker that runs one of them.
pytestmark = pytest.mark.xdist_group("files_listing")

PROJECTS = 600
FILES_EACH = 2  # 1,200 rows: more than one of the command's blocks of 1,000


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[FileRecord]]:
    """A directory store of PROJECTS projects of FILES_EACH records, and the records in the
    order a listing shows them."""
    root = tmp_path_factory.mktemp("primary")
    names = [f"p{number:05d}" for number in range(PROJECTS)]
    for name in names:
        write_catalog(root, name, FILES_EACH)
    made = [record(name, number) for name in names for number in range(FILES_EACH)]
    return root, sorted(made, key=lambda one: (one.project, one.filename))


def test_every_projects_files_come_a_window_of_projects_at_a_time(
    catalog: tuple[Path, list[FileRecord]],
) -> None:
    root, made = catalog
    store = CountingReads(open_store(f"file://{root}"))

    async def read() -> tuple[int, list[FileRecord]]:
        shown: list[FileRecord] = []
        read_before_the_first = -1
        async for records in listing(store):  # type: ignore[arg-type]
            if read_before_the_first < 0:
                read_before_the_first = store.reads
            shown += records
        return read_before_the_first, shown

    read_before_the_first, shown = asyncio.run(read())
    assert read_before_the_first <= PROJECTS_AHEAD * FILES_EACH
    assert shown == made
    assert store.reads == len(made)


def test_the_listing_in_json_and_as_a_table(catalog: tuple[Path, list[FileRecord]]) -> None:
    root, made = catalog
    store = ["--store", f"file://{root}"]
    as_json = CliRunner().invoke(main, ["files", "list", "--format", "json", *store])
    table = CliRunner().invoke(main, ["files", "list", *store])

    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {"files": [json.loads(r.to_json()) for r in made]}
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["project", "version", "filename", "size", "uploaded", "yanked"]
    assert set(lines[1]) == {" ", "─"}
    assert [line.split() for line in lines[2:]] == [
        [r.project, r.version, r.filename, str(r.size), r.upload_time] for r in made
    ]


def test_a_listing_whose_reader_leaves_ends_quietly(catalog: tuple[Path, list[FileRecord]]) -> None:
    """``files list | head -1``: the first block is more than a pipe holds, so the command
    is writing when its reader leaves."""
    root, _ = catalog
    listing_process = subprocess.Popen(
        [*PYTHONHOSTED, "files", "list", "--store", f"file://{root}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert listing_process.stdout is not None
        assert listing_process.stdout.readline().split() == [
            b"project",
            b"version",
            b"filename",
            b"size",
            b"uploaded",
            b"yanked",
        ]
        listing_process.stdout.close()
        _, stderr = listing_process.communicate(timeout=120)
    finally:
        listing_process.kill()
        listing_process.wait()
    assert (listing_process.returncode, stderr) == (141, b"")
