"""`files list|yank|unyank|delete` against running services: the index shows a yank and stops
listing a deleted file within a second (whatever its cache TTL), and the edges forget it.

The installers' side (pip and uv skipping a yanked release, failing on a deleted one, through
`pythonhosted serve`) is in tests/e2e/test_installers.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pty
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from pythonhosted.catalog import FileRecord, project_records, record_key
from pythonhosted.cli import main
from pythonhosted.config import FilesSettings, IndexSettings, Settings
from pythonhosted.files.manage import select, set_yanked
from pythonhosted.files.service import build_edge
from pythonhosted.files.upload import upload
from pythonhosted.index.service import build_app as build_index
from pythonhosted.samples import build_wheel
from pythonhosted.storage import open_store
from pythonhosted.web.router import PrefixRouter
from pythonhosted.web.server import Bind, free_port, running, wait_for_port
from support.catalogs import CountingReads, put_catalog
from support.catalogs import record as catalog_record
from support.edge import SAMPLES, seed
from support.metrics import sample
from support.processes import PYTHONHOSTED, spawn, started, stop_group, wait_until

JSON = "application/vnd.pypi.simple.v1+json"
WHEEL, SDIST = SAMPLES["wheel"], SAMPLES["sdist"]
NEWER = build_wheel("demo-pkg", "2.0")


@dataclass
class Site:
    """Index and edge as `serve` mounts them, over one store, with a long index cache."""

    url: str
    primary: str
    archive: str
    data_dir: Path

    def cli(self, *args: str, **env: str) -> Result:
        environment = {
            "PYTHONHOSTED_FILES__PRIMARY": self.primary,
            "PYTHONHOSTED_FILES__ARCHIVE": self.archive,
            "PYTHONHOSTED_DATA_DIR": str(self.data_dir),
            "PYTHONHOSTED_FILES__BIND": self.url.removeprefix("http://"),
            "PYTHONHOSTED_LOG_JSON": "true",  # log lines apart from what the CLI says
            **env,
        }
        return CliRunner().invoke(main, list(args), env=environment)

    def page(self, project: str = "demo-pkg") -> dict[str, dict[str, object]]:
        response = httpx.get(f"{self.url}/simple/{project}/", headers={"Accept": JSON})
        if response.status_code == 404:
            return {}
        return {entry["filename"]: entry for entry in response.json()["files"]}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    primary, archive = f"file://{tmp_path}/primary", f"file://{tmp_path}/archive"
    seed(primary)
    seed(archive)  # the archive keeps a copy of every upload, as PyPI's does
    asyncio.run(upload(open_store(primary), *NEWER))
    settings = Settings(
        data_dir=tmp_path / "data",
        files=FilesSettings(primary=primary, archive=archive, admin_secret="admin"),
        index=IndexSettings(cache_ttl=600),
    )
    front = PrefixRouter([("/simple", build_index(settings))], default=build_edge(settings))
    with running(front) as url:
        yield Site(url, primary, archive, tmp_path / "data")


def _records(primary: str) -> list[FileRecord]:
    return asyncio.run(project_records(open_store(primary), "demo-pkg"))


def _said(result: Result) -> list[str]:
    """What the command told its user on stderr (the log's JSON lines left out)."""
    return [line for line in result.stderr.splitlines() if not line.startswith("{")]


def _log_lines(result: Result) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "pythonhosted.files.manage"]


def test_list(site: Site) -> None:
    records = _records(site.primary)
    as_json = site.cli("files", "list", "--format", "json")
    one = site.cli("files", "list", "--project", "Demo_Pkg", "--format", "json")
    table = site.cli("files", "list")
    nothing = site.cli("files", "list", "--project", "nothing", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {"files": [json.loads(r.to_json()) for r in records]}
    assert one.stdout == as_json.stdout  # one project in this store
    assert [r.filename for r in records] == [WHEEL.filename, SDIST.filename, NEWER[0]]
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["project", "version", "filename", "size", "uploaded", "yanked"]
    assert [line.split() for line in lines[2:]] == [
        [r.project, r.version, r.filename, str(r.size), r.upload_time] for r in records
    ]
    assert json.loads(nothing.stdout) == {"files": []}


def test_yank_and_unyank_show_in_the_index_within_a_second(site: Site) -> None:
    newer = NEWER[0]
    assert site.page()[newer]["yanked"] is False  # the page is cached now, for 600 s
    yank = site.cli("files", "yank", "demo-pkg==2.0", "--reason", "bad build")
    assert (yank.exit_code, yank.stdout) == (0, f"yanked {newer}\n")
    wait_until(lambda: site.page()[newer]["yanked"] == "bad build")
    html = httpx.get(f"{site.url}/simple/demo-pkg/").text
    [link] = [line for line in html.splitlines() if newer in line]
    assert 'data-yanked="bad build"' in link
    assert all("data-yanked" not in line for line in html.splitlines() if line != link)
    [logged] = _log_lines(yank)
    assert {k: logged[k] for k in ("msg", "action", "project", "version", "file", "reason")} == {
        "msg": f"yank {newer}",
        "action": "yank",
        "project": "demo-pkg",
        "version": "2.0",
        "file": newer,
        "reason": "bad build",
    }
    assert logged["path"] == next(r.path for r in _records(site.primary) if r.filename == newer)

    unyank = site.cli("files", "unyank", "demo-pkg==2.0")
    assert (unyank.exit_code, unyank.stdout) == (0, f"unyanked {newer}\n")
    wait_until(lambda: site.page()[newer]["yanked"] is False)
    # A release of several files is yanked whole; without a reason, "yanked" is true.
    both = site.cli("files", "yank", "demo-pkg==1.0")
    assert both.stdout.splitlines() == [f"yanked {WHEEL.filename}", f"yanked {SDIST.filename}"]
    wait_until(lambda: site.page()[SDIST.filename]["yanked"] is True)
    assert 'data-yanked=""' in httpx.get(f"{site.url}/simple/demo-pkg/").text
    missing = site.cli("files", "yank", "demo-pkg==9.0")
    assert (missing.exit_code, missing.stderr) == (
        1,
        "error: demo-pkg==9.0: no such file\n",
    )


def test_delete_forgets_the_file_everywhere(site: Site) -> None:
    path = WHEEL.path
    assert httpx.get(site.url + path).status_code == 200  # the edge caches the body
    assert httpx.get(site.url + path + ".metadata").status_code == 200
    assert WHEEL.filename in site.page()  # and the index the page
    refused = site.cli("files", "delete", WHEEL.filename)
    assert (refused.exit_code, refused.stderr) == (
        1,
        "error: refusing to delete without --yes (stdin is not a terminal)\n",
    )
    assert httpx.get(site.url + path).status_code == 200

    # The edge's purge secret was generated into the data dir; the CLI finds it there, and
    # purges the edge at files.bind.
    deleted = site.cli("files", "delete", WHEEL.filename, "--yes", "--from-archive")
    assert (deleted.exit_code, deleted.stdout) == (0, f"deleted {path}\n")
    assert httpx.get(site.url + path).status_code == 404  # at once: the purge
    assert httpx.get(site.url + path + ".metadata").status_code == 404
    wait_until(lambda: WHEEL.filename not in site.page())
    assert [r.filename for r in _records(site.primary)] == [SDIST.filename, NEWER[0]]
    for store in ("primary", "archive"):
        root = site.data_dir.parent / store
        assert not (root / WHEEL.key).exists()
        assert not (root / (WHEEL.key + ".metadata")).exists()
    [logged] = _log_lines(deleted)
    assert {k: logged[k] for k in ("action", "file", "path", "from_archive", "purge_failed")} == {
        "action": "delete",
        "file": WHEEL.filename,
        "path": path,
        "from_archive": True,
        "purge_failed": [],
    }
    assert logged["purged"] == [site.url + path, site.url + path + ".metadata"]
    again = site.cli("files", "delete", WHEEL.filename, "--yes")
    assert (again.exit_code, again.stderr) == (
        1,
        f"error: {WHEEL.filename}: no such file\n",
    )
    # The name stays used, as on PyPI: neither the same bytes nor others may take it again.
    for data in (WHEEL.data, build_wheel("demo-pkg", "1.0", module_source="OTHER = 1\n")[1]):
        (site.data_dir / WHEEL.filename).write_bytes(data)
        reused = site.cli("files", "upload", str(site.data_dir / WHEEL.filename))
        assert (reused.exit_code, reused.stderr) == (
            1,
            f"error: {WHEEL.filename}: this filename was used by a deleted file; "
            "use a different version\n",
        )
    assert WHEEL.filename not in site.page()


def test_a_deleted_file_is_served_from_the_archive_until_deleted_there(site: Site) -> None:
    """As on PyPI: the archive keeps deleted files and the edge falls back to it."""
    path = SDIST.path
    primary_only = {"X-PyPI-Admin": "admin", "X-Force-Backend": "PRIMARY"}
    deleted = site.cli("files", "delete", "demo-pkg==1.0", "--yes")
    assert deleted.stdout.splitlines() == [f"deleted {WHEEL.path}", f"deleted {path}"]
    assert httpx.get(site.url + path).status_code == 200
    assert httpx.get(site.url + path, headers=primary_only).status_code == 404
    wait_until(lambda: set(site.page()) == {NEWER[0]})
    # The record is gone; the hashed path still names what is left.
    archived = site.cli("files", "delete", path, "--yes", "--from-archive")
    assert (archived.exit_code, archived.stdout) == (0, f"deleted {path}\n")
    assert httpx.get(site.url + path).status_code == 404


def test_purge_failures_are_reported(site: Site, tmp_path: Path) -> None:
    edge = site.url
    wrong = site.cli(
        "files",
        "delete",
        WHEEL.filename,
        "--yes",
        PYTHONHOSTED_FILES__PURGE_URLS=json.dumps([edge]),
        PYTHONHOSTED_FILES__PURGE_SECRET="wrong",
    )
    assert wrong.exit_code == 1
    assert wrong.stdout == f"deleted {WHEEL.path}\n"  # deleted all the same
    assert _said(wrong) == [
        f"error: PURGE {edge}{WHEEL.path}: 403 Purge credential refused",
        f"error: PURGE {edge}{WHEEL.path}.metadata: 403 Purge credential refused",
    ]
    # Nothing listening where the configured edge should be: a failure.
    closed = f"127.0.0.1:{free_port()}"
    configured = site.cli(
        "files",
        "delete",
        SDIST.filename,
        "--yes",
        PYTHONHOSTED_FILES__PURGE_URLS=json.dumps([f"http://{closed}"]),
    )
    assert configured.exit_code == 1
    assert _said(configured)[0] == (f"error: PURGE http://{closed}{SDIST.path}: connection refused")
    # Nothing listening at files.bind (the default edge): nothing cached there, not a failure.
    default = site.cli("files", "delete", NEWER[0], "--yes", PYTHONHOSTED_FILES__BIND=closed)
    assert (default.exit_code, _said(default)) == (
        0,
        [f"note: no files edge at http://{closed}: nothing cached there"],
    )


def test_a_deleted_file_404s_on_every_worker_at_once(tmp_path: Path) -> None:
    """`files serve --workers 2`: the PURGE reaches one worker; both forget the file."""
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    bind = Bind("127.0.0.1", free_port())
    env = {
        **os.environ,
        "PYTHONHOSTED_DATA_DIR": str(tmp_path / "data"),
        "PYTHONHOSTED_FILES__PRIMARY": primary,
        "PYTHONHOSTED_FILES__BIND": f"{bind.host}:{bind.port}",
    }
    url = bind.url()
    with started([*PYTHONHOSTED, "files", "serve", "--workers", "2"], env=env):
        wait_for_port(bind, timeout=60)

        def both_workers_cached_it() -> bool:
            # A new connection each time: the kernel hands them to either worker.
            assert httpx.get(url + SDIST.path).status_code == 200
            return sample(url, "files_cache_entries", cache="bodies") == 2

        wait_until(both_workers_cached_it, timeout=60)
        delete = subprocess.run(
            [*PYTHONHOSTED, "files", "delete", SDIST.filename, "--yes"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (delete.returncode, delete.stdout) == (0, f"deleted {SDIST.path}\n")
        statuses = [httpx.get(url + SDIST.path).status_code for _ in range(40)]
        assert statuses == [404] * 40

        def both_workers_forgot_it() -> bool:
            # A worker takes the others' purges before its next answer; under load the kernel
            # gave all 40 new connections above to one worker, so ask until both have answered
            # (their metrics snapshots catch up within 2 s).
            assert httpx.get(url + SDIST.path).status_code == 404
            return sample(url, "files_cache_entries", cache="bodies") == 0

        wait_until(both_workers_forgot_it, interval=0.25)


@pytest.mark.parametrize(("answer", "deleted"), [("n", False), ("y", True)])
def test_delete_asks_on_a_terminal(tmp_path: Path, answer: str, deleted: bool) -> None:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    env = {
        **os.environ,
        "PYTHONHOSTED_FILES__PRIMARY": primary,
        "PYTHONHOSTED_DATA_DIR": str(tmp_path / "data"),
        "PYTHONHOSTED_FILES__PURGE_URLS": "[]",
    }
    controller, terminal = pty.openpty()  # stdin is a terminal: the command asks
    process = spawn(
        [*PYTHONHOSTED, "files", "delete", SDIST.filename],
        env=env,
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        os.write(controller, f"{answer}\n".encode())
        out, err = process.communicate(timeout=60)
    finally:
        stop_group(process)
        os.close(controller)
        os.close(terminal)
    assert err.decode().startswith(f"Delete {SDIST.filename}? [y/N]: ")
    assert process.returncode == (0 if deleted else 1)
    assert out.decode() == (f"deleted {SDIST.path}\n" if deleted else "")
    assert (tmp_path / "primary" / SDIST.key).exists() is not deleted


def test_an_edge_that_cannot_keep_a_purge_secret_refuses_purges(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    (tmp_path / "a-file").write_text("")
    settings = Settings(data_dir=tmp_path / "a-file" / "data", files=FilesSettings(primary=primary))
    with running(build_edge(settings)) as url:
        purge = httpx.request("PURGE", url + SDIST.path, headers={"Authorization": "Bearer x"})
        served = httpx.get(url + SDIST.path)
    assert (purge.status_code, served.status_code) == (403, 200)
    assert any(
        record.getMessage().startswith("purges refused: no files.purge_secret and ")
        for record in caplog.records
    )


def test_a_release_of_a_large_project_is_found_without_reading_every_record(
    tmp_path: Path,
) -> None:
    """Yanking or deleting one release of a 50,000-file nightly project read all 50,000
    records (14 s of CPU); the filenames say which files are the release's."""
    primary = open_store(f"file://{tmp_path}/primary")
    asyncio.run(put_catalog(primary, "nightly", 3_000))
    odd = dataclasses.replace(catalog_record("nightly", 0), filename="nightly.egg-info.json")
    asyncio.run(primary.put(record_key("nightly", odd.filename), odd.to_json()))
    store = CountingReads(primary)
    found = asyncio.run(select(store, "Nightly==1.7.0"))  # type: ignore[arg-type]
    assert [record.filename for record in found] == ["nightly-1.7-py3-none-any.whl"]
    assert store.reads == 2  # its record, and the one whose filename says no version
    yanked = asyncio.run(set_yanked(primary, found, True, "broken"))
    assert [record.yanked_reason for record in yanked] == ["broken"]
    assert asyncio.run(select(primary, "nightly==1.7")) == yanked


def _release(primary: str, project: str, files: int) -> list[str]:
    """Catalog records of one release of ``files`` wheels (no objects: a delete takes a
    record whose object is gone); their paths."""
    made = [
        dataclasses.replace(
            catalog_record(project, 0, tags=f"cp3{number}-cp3{number}-linux_x86_64"), version="1.0"
        )
        for number in range(files)
    ]
    store = open_store(primary)
    for record in made:
        asyncio.run(store.put(record_key(project, record.filename), record.to_json()))
    return sorted(record.path for record in made)


def test_each_file_of_a_large_release_is_logged_with_its_own_purges(site: Site) -> None:
    """Outcomes are matched to files by their position (matching each outcome's URL against
    every path was quadratic: 23 s of a 5,000-file delete); each file's delete log names its
    own two purges, and none other."""
    paths = _release(site.primary, "big", 500)
    deleted = site.cli("files", "delete", "big==1.0", "--yes")
    assert (deleted.exit_code, _said(deleted)) == (0, [])
    assert sorted(deleted.stdout.splitlines()) == [f"deleted {path}" for path in paths]
    logged = {line["path"]: line for line in _log_lines(deleted)}
    assert sorted(logged) == paths
    for path, line in logged.items():
        assert (line["purged"], line["purge_failed"]) == (
            [site.url + path, site.url + path + ".metadata"],
            [],
        )


def test_an_edge_that_never_answers_costs_one_timeout_not_one_per_purge(
    site: Site,
) -> None:
    """A configured edge that takes connections and never answers: the first purges time out
    together (5 s); the rest are not sent, and the command says 20 failures, then a count."""
    paths = _release(site.primary, "big", 500)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # never accepted: requests wait for an answer until the timeout
        edge = f"http://127.0.0.1:{silent.getsockname()[1]}"
        deleted = site.cli(
            "files",
            "delete",
            "big==1.0",
            "--yes",
            PYTHONHOSTED_FILES__PURGE_URLS=json.dumps([edge]),
        )
    assert deleted.exit_code == 1
    assert sorted(deleted.stdout.splitlines()) == [f"deleted {path}" for path in paths]
    shown = [
        f"error: PURGE {edge}{p}{tail}: TimeoutError" for p in paths for tail in ("", ".metadata")
    ]
    assert _said(deleted) == [
        *shown[:20],
        "error: 980 more purges failed (the delete log names each)",
    ]
    logged = {line["path"]: line for line in _log_lines(deleted)}
    assert sorted(logged) == paths
    for path, line in logged.items():
        assert (line["purged"], line["purge_failed"]) == (
            [],
            [f"{edge}{path}: TimeoutError", f"{edge}{path}.metadata: TimeoutError"],
        )
