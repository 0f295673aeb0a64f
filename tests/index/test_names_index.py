"""The catalog's names index: the root page's list read from a snapshot after a restart, not
walked again (a million project directories: 40-70 s, every request of the server slowed
meanwhile, at each restart and in each new worker: BENCHMARKS.md "index root")."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pythonhosted.catalog import NAMES_PREFIX, NAMES_USABLE, read_names, record_key
from pythonhosted.files.manage import delete
from pythonhosted.files.upload import upload
from pythonhosted.index import cached_catalog
from pythonhosted.index.app import IndexApp, IndexOptions
from pythonhosted.samples import build_wheel
from pythonhosted.storage import Store, open_store
from pythonhosted.web.server import Bind, free_port, running, wait_for_port
from support.catalogs import record
from support.processes import PYTHONHOSTED, started, wait_until


class CountingWalks:
    """A store that counts whole listings of the catalog (the walk); the rest goes through."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.walks = 0

    async def list_names(self, prefix: str, **options: bool) -> list[str]:
        self.walks += 1
        return await self._store.list_names(prefix, **options)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


@pytest.fixture(params=["file", "s3"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, list[str]]:
    """A catalog of projects with a record each: 2,000 in a directory, 200 on moto's S3 (its
    puts are slow)."""
    if request.param == "file":
        store, count = open_store(f"file://{tmp_path}/primary"), 2_000
    else:
        store, count = open_store(request.getfixturevalue("s3_url")), 200
    names = [f"p{number:05d}" for number in range(count)]
    asyncio.run(_put_projects(store, names))
    return store, names


async def _put_projects(store: Store, names: list[str]) -> None:
    """A record each, as uploads write them (without building a wheel each)."""
    limit = asyncio.Semaphore(32)

    async def put(name: str) -> None:
        made = record(name, 0)
        async with limit:
            await store.put(record_key(name, made.filename), made.to_json())

    await asyncio.gather(*(put(name) for name in names))


def _project_names(client: httpx.Client) -> list[str]:
    page = client.get("/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    return [project["name"] for project in page.json()["projects"]]


def _snapshot_names(store: Store) -> list[str] | None:
    snapshot = asyncio.run(read_names(store))
    return snapshot.names if snapshot is not None else None


def _serve(store: Store) -> tuple[CountingWalks, IndexApp]:
    counting = CountingWalks(store)
    return counting, IndexApp(counting, None, IndexOptions(cache_ttl=600))  # type: ignore[arg-type]


def test_a_restart_reads_the_names_snapshot_and_does_not_walk(
    catalog: tuple[Store, list[str]],
) -> None:
    store, names = catalog
    first, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == names
        wait_until(lambda: _snapshot_names(store) == names)
    assert first.walks == 1
    restarted, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == names
        assert _project_names(client) == names
    assert restarted.walks == 0


def test_changes_after_the_snapshot_show_after_a_restart(
    catalog: tuple[Store, list[str]],
) -> None:
    """Two uploads of new projects at once and the delete of a project's only file, made
    while no index ran: the restarted index shows them from the change markers since the
    snapshot, without walking, and writes them into the next snapshot."""
    store, names = catalog
    gone = asyncio.run(upload(store, *build_wheel("Gone", "1.0")))
    _, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == sorted([*names, "gone"])
        wait_until(lambda: _snapshot_names(store) == sorted([*names, "gone"]))

    async def change() -> None:
        await asyncio.gather(
            upload(store, *build_wheel("New.One", "1.0")),
            upload(store, *build_wheel("new_two", "1.0")),
        )
        await delete(store, None, [(gone, gone.path)])

    asyncio.run(change())
    expected = sorted([*names, "new-one", "new-two"])
    restarted, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == expected
    assert restarted.walks == 0


def test_a_running_index_writes_its_changes_into_a_new_snapshot(
    catalog: tuple[Store, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The markers are kept ten minutes: a process writes its up-to-date list again (every
    SNAPSHOT_EVERY, here at once), so a later restart still needs no walk."""
    store, names = catalog
    monkeypatch.setattr(cached_catalog, "SNAPSHOT_EVERY", 0.0)
    first, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == names
        asyncio.run(upload(store, *build_wheel("Later", "1.0")))
        expected = sorted([*names, "later"])
        wait_until(lambda: _project_names(client) == expected)
        wait_until(lambda: _project_names(client) and _snapshot_names(store) == expected)
    assert first.walks == 1


def _damage_truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _damage_unsorted(data: bytes) -> bytes:
    header, _, body = gzip.decompress(data).partition(b"\n")
    return gzip.compress(header + b"\n" + b"\n".join(reversed(body.split(b"\n"))))


def _damage_count(data: bytes) -> bytes:
    header, _, body = gzip.decompress(data).partition(b"\n")
    return gzip.compress(header + b"\n" + body.rsplit(b"\n", 1)[0])


@pytest.mark.parametrize("damage", [_damage_truncated, _damage_unsorted, _damage_count])
def test_a_damaged_snapshot_is_not_used(tmp_path: Path, damage: object) -> None:
    """A snapshot cut short, out of order or missing names: the catalog is walked (the list
    right) and a good snapshot written in its place."""
    store = open_store(f"file://{tmp_path}/primary")
    names = [f"p{number:04d}" for number in range(300)]
    asyncio.run(_put_projects(store, names))
    _, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == names
        wait_until(lambda: _snapshot_names(store) == names)
    (written,) = asyncio.run(store.list(NAMES_PREFIX))
    assert callable(damage)
    asyncio.run(store.put(written.key, damage(asyncio.run(store.get_bytes(written.key)))))
    assert _snapshot_names(store) is None
    restarted, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == names
        wait_until(lambda: _snapshot_names(store) == names)
    assert restarted.walks == 1


def test_a_snapshot_older_than_the_markers_kept_is_not_used(tmp_path: Path) -> None:
    """Past NAMES_USABLE the markers since it may be gone: a change would be missed."""
    store = open_store(f"file://{tmp_path}/primary")
    asyncio.run(_put_projects(store, ["kept"]))
    old = time.time_ns() - int((NAMES_USABLE + 1) * 1e9)
    stale = gzip.compress(b"pythonhosted catalog names 1 1\nstale")
    asyncio.run(store.put(f"{NAMES_PREFIX}{old:020d}-0123456789ab", stale))
    restarted, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == ["kept"]
        wait_until(lambda: _snapshot_names(store) == ["kept"])
    assert restarted.walks == 1


def test_indexes_started_together_each_write_and_a_restart_reads_one(tmp_path: Path) -> None:
    """Two processes walking at once both write (create-only, each its own key); older
    snapshots are removed as newer ones come, and a restart reads the newest."""
    store = open_store(f"file://{tmp_path}/primary")
    names = [f"p{number:04d}" for number in range(500)]
    asyncio.run(_put_projects(store, names))
    apps = [_serve(store)[1] for _ in range(4)]
    with (
        running(apps[0].service()) as one,
        running(apps[1].service()) as two,
        running(apps[2].service()) as three,
        running(apps[3].service()) as four,
    ):

        async def roots() -> list[int]:
            async with httpx.AsyncClient() as client:
                answers = await asyncio.gather(
                    *(client.get(f"{url}/simple/") for url in (one, two, three, four))
                )
            return [answer.status_code for answer in answers]

        assert asyncio.run(roots()) == [200] * 4
        wait_until(lambda: _snapshot_names(store) == names)
    assert 1 <= len(asyncio.run(store.list(NAMES_PREFIX))) <= 4
    restarted, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == names
    assert restarted.walks == 0


def _walkers(pid: int) -> list[int]:
    """The processes ``pid`` started that run the walk (a child caught between its fork and
    its exec is still the server: stopped there, it would stop the server's spawn)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                walking = b"walk.py" in Path(entry.path, "cmdline").read_bytes()
                if int(stat[1]) == pid and walking:
                    found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_index_serve_stops_on_sigterm_while_it_walks_the_catalog(tmp_path: Path) -> None:
    """The walk runs in a process of its own, here frozen (SIGSTOP) as a walk of a million
    directories would seem: SIGTERM still stops the server (after ``http.drain_timeout``),
    and the walk's process is killed, not left behind. In a thread, the walk held the stop
    until it ended."""
    catalog = tmp_path / "primary" / "catalog"
    for number in range(2_000):
        (catalog / f"p{number:05d}").mkdir(parents=True)
        (catalog / f"p{number:05d}" / f"p{number:05d}-1.0.tar.gz.json").write_bytes(b"{}")
    bind = Bind("127.0.0.1", free_port())
    command = [*PYTHONHOSTED, "index", "serve", "--primary", f"file://{tmp_path}/primary"]
    command += ["--bind", f"{bind.host}:{bind.port}"]
    env = {
        **os.environ,
        "PYTHONHOSTED_DATA_DIR": str(tmp_path / "data"),
        "PYTHONHOSTED_HTTP__DRAIN_TIMEOUT": "0.5",
    }
    for _ in range(10):  # until a walk is caught under way (it may end before it is seen)
        shutil.rmtree(tmp_path / "primary" / NAMES_PREFIX, ignore_errors=True)
        with started(command, env=env) as server, ThreadPoolExecutor(1) as asking:
            wait_for_port(bind, timeout=60)
            root = asking.submit(httpx.get, f"{bind.url()}/simple/", timeout=120)
            walker = None
            while walker is None and not root.done():
                walker = next(iter(_walkers(server.pid)), None)
            if walker is None:
                continue
            os.kill(walker, signal.SIGSTOP)
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=60) == 0
            wait_until(lambda walker=walker: not _alive(walker))
            with contextlib.suppress(httpx.HTTPError):  # (cut by the stop: a 500, or closed)
                assert root.result().status_code == 500
            return
    pytest.fail("no walk of the catalog seen in a process of its own")
