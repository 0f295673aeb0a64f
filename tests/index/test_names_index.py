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
import tracemalloc
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pythonhosted import catalog as catalog_module
from pythonhosted.catalog import (
    NAMES_PREFIX,
    NAMES_USABLE,
    NamesSnapshot,
    read_names,
    record_key,
    write_names,
)
from pythonhosted.files.manage import delete
from pythonhosted.files.upload import upload
from pythonhosted.index import cached_catalog
from pythonhosted.index.app import IndexApp, IndexOptions
from pythonhosted.samples import build_wheel
from pythonhosted.storage import Store, open_store
from pythonhosted.web.server import Bind, free_port, running, wait_for_port
from support.catalogs import record
from support.metrics import sample
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


def _serve(store: Store, ttl: float = 600) -> tuple[CountingWalks, IndexApp]:
    counting = CountingWalks(store)
    return counting, IndexApp(counting, None, IndexOptions(cache_ttl=ttl))  # type: ignore[arg-type]


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


def test_a_quiet_index_keeps_the_snapshot_usable_for_a_restart(
    catalog: tuple[Store, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index asked for no root page for longer than NAMES_USABLE (here 2 s), an upload made
    meanwhile: its keeper keeps a snapshot young, with the upload in it, and a restart reads it
    instead of walking. Before, a quiet index wrote none (only a root request did), and the
    restart after it walked the whole catalog."""
    store, names = catalog
    monkeypatch.setattr(catalog_module, "NAMES_USABLE", 2.0)
    monkeypatch.setattr(cached_catalog, "SNAPSHOT_EVERY", 0.2)
    monkeypatch.setattr(cached_catalog, "KEEP_EVERY", 0.2, raising=False)
    expected = sorted([*names, "quiet-upload"])
    first, app = _serve(store)
    with running(app.service()):
        began = time.time_ns()
        asyncio.run(upload(store, *build_wheel("Quiet.Upload", "1.0")))

        def renewed() -> bool:
            snapshot = asyncio.run(read_names(store))
            return snapshot is not None and snapshot.position_ns > began + 2.5e9

        wait_until(renewed)
        assert _snapshot_names(store) == expected
    assert first.walks == 1  # (the keeper's, at its start)
    restarted, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == expected
    assert restarted.walks == 0


def test_a_snapshot_removed_while_it_is_read_gives_way_to_a_newer_one(tmp_path: Path) -> None:
    """Each writer keeps the newest NAMES_KEPT (2): with several indexes, two may write while
    a reader reads the one it chose (a million names take a while) and remove it. The reader
    lists them again and reads the newest; it used to find none, and walk the catalog."""
    store = open_store(f"file://{tmp_path}/primary")
    asyncio.run(write_names(store, NamesSnapshot(time.time_ns(), ["chosen"], time.time_ns())))
    reader = WritersMeanwhile(store)
    snapshot = asyncio.run(read_names(reader))  # type: ignore[arg-type]
    assert snapshot is not None and snapshot.names == ["newer-1"]
    assert reader.reads == 2


class WritersMeanwhile:
    """A store where, at the first read of a snapshot, two other writers write theirs."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reads = 0

    async def get_bytes(self, key: str) -> bytes:
        self.reads += 1
        if self.reads == 1:
            for number in range(2):
                now = time.time_ns()
                await write_names(self._store, NamesSnapshot(now, [f"newer-{number}"], now))
        return await self._store.get_bytes(key)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_a_list_from_snapshots_is_walked_again_once_its_walk_is_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project whose marker was never written (its upload's process killed in between) is
    not in the snapshot. The list restarts read is walked again once the walk it comes from
    (the snapshot says when) is older than the period, here 600 s a name, whichever process
    holds it; one walked recently is not (the ttl here 0). Before, each restart kept the list
    its period anew: restarted more often than that, no index ever walked again, and the
    project never showed."""
    store = open_store(f"file://{tmp_path}/primary")
    asyncio.run(_put_projects(store, ["listed", "unmarked"]))
    monkeypatch.setattr(cached_catalog, "NAMES_SECONDS_PER_NAME", 600.0)
    now = time.time_ns()
    asyncio.run(write_names(store, NamesSnapshot(now, ["listed"], now)))
    recent, app = _serve(store, ttl=0)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == ["listed"]
    assert recent.walks == 0
    now = time.time_ns()
    asyncio.run(write_names(store, NamesSnapshot(now, ["listed"], now - int(1200e9))))
    old, app = _serve(store, ttl=0)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        wait_until(lambda: _project_names(client) == ["listed", "unmarked"])
    assert old.walks == 1


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


def _gzip_bomb(header: bytes, zeros: int) -> bytes:
    """``header`` then ``zeros`` zero bytes, gzipped a megabyte at a time (never held whole)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(header)]
    parts.extend(packer.compress(bytes(1 << 20)) for _ in range(zeros >> 20))
    return b"".join([*parts, packer.flush()])


def test_a_snapshot_that_unpacks_to_a_bomb_is_not_used_nor_unpacked_whole(tmp_path: Path) -> None:
    """256 MB of zeros (250 KB gzipped) in a snapshot's place under a good header: unpacked
    whole, every index process that started took it into memory, and more to split it."""
    store = open_store(f"file://{tmp_path}/primary")
    header = b"pythonhosted catalog names 2 1 %d\n" % time.time_ns()
    bomb = _gzip_bomb(header, 256 << 20)
    asyncio.run(store.put(f"{NAMES_PREFIX}{time.time_ns():020d}-0123456789ab", bomb))
    tracemalloc.start()
    try:
        assert _snapshot_names(store) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


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
    its exec is still the server: stopped there, it would stop the server's spawn).

    Read from the lists of children of its threads, not by scanning every process of the
    machine: with the catalog on tmpfs, at load 22-27, one scan of /proc outlasted the whole
    walk, and in ten tries in a row none was caught under way."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in children.read_text().split():
                with contextlib.suppress(OSError):
                    if b"walk.py" in Path(f"/proc/{child}/cmdline").read_bytes():
                        found.append(int(child))
    return found


def _state(pid: int) -> str | None:
    """The process's state letter (``T`` stopped, ``Z`` a zombie), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z")


def _frozen(pid: int) -> bool:
    """SIGSTOP ``pid``; whether it is stopped now (False: it ended first)."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return False
    wait_until(lambda: _state(pid) in ("T", "t", "Z", None))
    return _state(pid) in ("T", "t")


def test_a_stop_while_the_catalog_is_walked_answers_at_once_and_kills_the_walk(
    tmp_path: Path,
) -> None:
    """The walk (the keeper's, at the index's start) runs in a process of its own, here frozen
    (SIGSTOP) as a walk of a million directories would seem, and a root request waits on it.
    SIGTERM answers that request 503 at once and the server stops, the walk's process killed.
    Before, the stop waited the whole ``http.drain_timeout`` and then cut the request (a 500).
    """
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
        "PYTHONHOSTED_HTTP__DRAIN_TIMEOUT": "30",  # (a stop that waits it out fails the test)
    }
    snapshots = tmp_path / "primary" / NAMES_PREFIX
    for _ in range(10):  # until a walk is caught under way (it may end before it is seen)
        shutil.rmtree(snapshots, ignore_errors=True)
        with started(command, env=env) as server, ThreadPoolExecutor(1) as asking:
            walker = None
            while walker is None and not (snapshots.is_dir() and any(snapshots.iterdir())):
                walker = next(iter(_walkers(server.pid)), None)
            if walker is None or not _frozen(walker):
                continue  # the walk ended before it was caught
            wait_for_port(bind, timeout=60, process=server)
            root = asking.submit(httpx.get, f"{bind.url()}/simple/", timeout=120)
            # (the root request, and the one asking)
            wait_until(lambda: sample(bind.url(), "index_requests_in_flight") == 2)
            server.send_signal(signal.SIGTERM)
            answer = root.result()
            assert (answer.status_code, answer.text) == (503, "Stopping: ask again\n")
            assert server.wait(timeout=60) == 0
            wait_until(lambda walker=walker: not _alive(walker))
            return
    pytest.fail("no walk of the catalog seen in a process of its own")


@pytest.mark.parametrize(
    ("header", "walks"),
    [
        pytest.param(b"3 {count} {walked} 42 more", 0, id="later-version"),
        pytest.param(b"2 {count}", 1, id="too-few-fields"),
        pytest.param(b"1 {count} {walked}", 1, id="version-1-with-a-walk"),
        pytest.param(b"9" * 5000 + b" {count} {walked}", 1, id="5000-digit-version"),
        pytest.param(b"2 {count} " + b"9" * 5000, 1, id="5000-digit-walk"),
    ],
)
def test_a_later_versions_snapshot_is_read_and_a_malformed_header_walks(
    tmp_path: Path, header: bytes, walks: int
) -> None:
    """In a rolling upgrade the processes on older code read the newer ones' snapshots (a
    later version only adds header fields); a header that is not one of ours is damaged."""
    store = open_store(f"file://{tmp_path}/primary")
    names = [f"p{number:04d}" for number in range(300)]
    asyncio.run(_put_projects(store, names))
    fields = header.replace(b"{count}", b"%d" % len(names))
    fields = fields.replace(b"{walked}", b"%d" % time.time_ns())
    snapshot = b"pythonhosted catalog names " + fields + b"\n" + "\n".join(names).encode()
    key = f"{NAMES_PREFIX}{time.time_ns():020d}-0123456789ab"
    asyncio.run(store.put(key, gzip.compress(snapshot)))
    restarted, app = _serve(store)
    with running(app.service()) as url, httpx.Client(base_url=url) as client:
        assert _project_names(client) == names
    assert restarted.walks == walks
