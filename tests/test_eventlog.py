"""The event log's spool: batches, and segments of dead or live processes."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from pythonhosted.eventlog import SHIPPING_TIMEOUTS, EventLog, EventLogConfig
from pythonhosted.storage import StorageError, StoreUnavailable, open_store
from pythonhosted.web.server import running
from support.locks import lock_holder
from support.s3_failures import FailingS3, object_path, through


def _shipped(root: Path) -> list[str]:
    paths = sorted((root / "logs" / "downloads").rglob("*.log.gz"))
    return [line for p in paths for line in gzip.decompress(p.read_bytes()).decode().splitlines()]


async def _until_shipped(objects: Callable[[], Awaitable[int]], count: int) -> None:
    """Until the run loop has shipped ``count`` objects: a full batch wakes it, but a starved
    process takes its time (a fixed half-second sleep let the next batch's lines in first)."""
    deadline = time.monotonic() + 60
    while await objects() < count:
        assert time.monotonic() < deadline, f"{count} objects not shipped within 60 s"
        await asyncio.sleep(0.02)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_batch_size_ships_early_and_names_are_unique(tmp_path: Path) -> None:
    config = EventLogConfig("downloads", tmp_path / "spool", period=3600, batch_lines=10)
    log = EventLog(open_store(f"file://{tmp_path}/logs"), config)

    async def scenario() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(log.run(stop))

        async def objects() -> int:
            return len(list((tmp_path / "logs" / "downloads").rglob("*.log.gz")))

        for full, (start, end) in enumerate(((0, 10), (10, 20)), start=1):
            for n in range(start, end):
                log.append(f"line {n}")
            await _until_shipped(objects, full)  # shipped long before the hour
        for n in range(20, 25):
            log.append(f"line {n}")
        stop.set()  # the last 5 lines go out with the final flush
        await runner

    asyncio.run(scenario())
    objects = sorted((tmp_path / "logs" / "downloads").rglob("*.log.gz"))
    assert len(objects) == 3
    assert len({path.name for path in objects}) == 3
    assert sorted(_shipped(tmp_path), key=lambda line: int(line.split()[1])) == [
        f"line {n}" for n in range(25)
    ]


def test_leftovers_of_dead_processes_are_shipped_live_ones_left(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    dead, alive = _dead_pid(), os.getppid()
    (spool / f"downloads-1000000-{dead}-aaaa.spool").write_bytes(b"from dead writer\npartial")
    live = spool / f"downloads-2000000-{alive}-bbbb.spool"
    live.write_bytes(b"still being written\n")
    (spool / f"downloads-3000000-{alive}-cccc.claimed-{dead}").write_bytes(b"dead shipper\n")
    lock_holder(live)  # its writer, alive
    log = EventLog(open_store(f"file://{tmp_path}/logs"), EventLogConfig("downloads", spool))
    asyncio.run(log.ship_leftovers())
    # The partial last line of a killed writer was never a complete event.
    assert sorted(_shipped(tmp_path)) == ["dead shipper", "from dead writer"]
    assert [p.name for p in spool.iterdir()] == [live.name]


def test_a_dead_writer_is_known_by_its_lock_not_its_pid(tmp_path: Path) -> None:
    """After a reboot or a container restart the pid in a dead writer's segment names some
    other living process (in a container, often the restarted edge itself): its lines were
    never shipped, however often the edge restarted. 200 segments, each named after a live
    pid, none locked: all shipped, once."""
    spool = tmp_path / "spool"
    spool.mkdir()
    alive = os.getppid()
    for n in range(100):
        (spool / f"downloads-{n + 1}000000-{alive}-{n:04x}.spool").write_bytes(
            f"written {n}\n".encode()
        )
        (spool / f"downloads-{n + 1}000001-{alive}-{n + 100:04x}.claimed-{alive}").write_bytes(
            f"claimed {n}\n".encode()
        )
    log = EventLog(open_store(f"file://{tmp_path}/logs"), EventLogConfig("downloads", spool))
    asyncio.run(log.ship_leftovers())
    asyncio.run(log.ship_leftovers())  # a second pass finds nothing more to ship
    expected = [f"{kind} {n}" for kind in ("claimed", "written") for n in range(100)]
    assert sorted(_shipped(tmp_path)) == sorted(expected)
    assert list(spool.iterdir()) == []


# A shipper that dies the moment its object is stored, before it deletes the segment.
_KILLED_AFTER_PUT = """
import asyncio, os, signal, sys
from pathlib import Path
from pythonhosted.eventlog import EventLog, EventLogConfig
from pythonhosted.storage import StorageError, StoreUnavailable, open_store

store = open_store(sys.argv[1])
put = store.put

async def put_then_die(*args, **kwargs):
    await put(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

store.put = put_then_die
log = EventLog(store, EventLogConfig("downloads", Path(sys.argv[2])))
for n in range(500):
    log.append(f"line {n}")
asyncio.run(log.flush())
"""


def test_a_shipper_killed_after_storing_a_segment_ships_it_once(tmp_path: Path) -> None:
    """SIGKILL between storing a segment's object and deleting the segment: the next start
    finds the segment (no one holds its lock) and ships it again. Its object had a random
    name, so the retry stored a second one: 500 lines counted twice. Named after the segment,
    the retry finds its object there and only deletes the segment."""
    spool = tmp_path / "spool"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_PUT, f"file://{tmp_path}/logs", str(spool)],
        start_new_session=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -9
    assert [p.name.split(".")[1][:8] for p in spool.iterdir()] == ["claimed-"]
    log = EventLog(open_store(f"file://{tmp_path}/logs"), EventLogConfig("downloads", spool))
    asyncio.run(log.ship_leftovers())
    assert sorted(_shipped(tmp_path), key=lambda line: int(line.split()[1])) == [
        f"line {n}" for n in range(500)
    ]
    assert list(spool.iterdir()) == []


@pytest.mark.parametrize("server", ["s3", "seaweedfs"])
def test_batches_ship_to_s3_servers(
    tmp_path: Path, server: str, request: pytest.FixtureRequest
) -> None:
    """Shipping to moto and to SeaweedFS: whole gzip objects, created once each under
    ``downloads/%Y/%m/%d/%H/%M/``, every line in exactly one of them."""
    store = open_store(request.getfixturevalue(f"{server}_url"))
    config = EventLogConfig("downloads", tmp_path / "spool", period=3600, batch_lines=400)
    log = EventLog(store, config)

    async def scenario() -> list[tuple[str, bytes]]:
        stop = asyncio.Event()
        runner = asyncio.create_task(log.run(stop))

        async def objects() -> int:
            return len(await store.list())

        for n in range(1000):
            log.append(f"download|line {n}")
            if n % 400 == 399:
                await _until_shipped(objects, (n + 1) // 400)
        stop.set()
        await runner
        return [(item.key, await store.get_bytes(item.key)) for item in await store.list()]

    shipped = asyncio.run(scenario())
    assert len(shipped) == 3
    assert all(re.fullmatch(r"downloads/\d{4}/\d\d/\d\d/\d\d/\d\d/downloads-.+\.log\.gz", key)
               for key, _ in shipped)  # fmt: skip
    lines = [line for _, data in shipped for line in gzip.decompress(data).decode().splitlines()]
    assert sorted(lines, key=lambda line: int(line.rsplit(" ", 1)[1])) == [
        f"download|line {n}" for n in range(1000)
    ]
    assert list((tmp_path / "spool").iterdir()) == []  # everything shipped, nothing left


def test_a_store_that_keeps_failing_is_a_few_lines_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each failed store of a batch was logged with its traceback (~40 lines) every period:
    a full disk under a 1 s period wrote 574 lines in 10 s. Now one line a failure, a few a
    minute (boundedlog), and every line ships once the store takes them again."""
    config = EventLogConfig("downloads", tmp_path / "spool", period=0.02, batch_lines=5)
    log = EventLog(open_store(f"file://{tmp_path}/logs"), config)
    blocked = tmp_path / "logs" / "downloads"
    blocked.write_bytes(b"")  # a file where the batches' directory goes: every put fails

    async def scenario() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(log.run(stop))
        for n in range(300):
            log.append(f"line {n}")
            if n % 5 == 4:
                await asyncio.sleep(0.01)
        blocked.unlink()  # the store works again: the stop's flush ships what was held
        stop.set()
        await runner

    with caplog.at_level("INFO", logger="pythonhosted.eventlog"):
        asyncio.run(scenario())
    failed = [r for r in caplog.records if r.getMessage().startswith("could not store")]
    assert 1 <= len(failed) <= 10
    assert [r for r in failed if r.exc_info or "\n" in r.getMessage()] == []
    assert sorted(_shipped(tmp_path), key=lambda line: int(line.split()[1])) == [
        f"line {n}" for n in range(300)
    ]


def test_a_store_that_refuses_a_segment_ends_the_pass(tmp_path: Path) -> None:
    """200 segments left by an outage, and a store still down: each attempt costs a hanging
    store its whole timeout (30 s), so a pass, and the flush of a stop, lasted 200 timeouts.
    The first refusal ends it; every segment waits on disk and ships once the store is back."""
    spool = tmp_path / "spool"
    spool.mkdir()
    dead = _dead_pid()
    for n in range(200):
        segment = spool / f"downloads-{n + 1}000000-{dead}-{n:04x}.spool"
        segment.write_bytes(f"line {n}\n".encode())
    store = open_store(f"file://{tmp_path}/logs")
    put = store.put
    attempts = 0

    async def down(*args: object, **kwargs: object) -> None:
        nonlocal attempts
        attempts += 1
        raise StoreUnavailable("s3://logs: timed out after 30 s")

    store.put = down  # type: ignore[method-assign]
    log = EventLog(store, EventLogConfig("downloads", spool))
    log.append("during the outage")
    asyncio.run(log.flush())
    asyncio.run(log.ship_leftovers())
    assert (attempts, len(list(spool.iterdir()))) == (2, 201)
    store.put = put  # type: ignore[method-assign]
    asyncio.run(log.flush())
    expected = ["during the outage", *(f"line {n}" for n in range(200))]
    assert sorted(_shipped(tmp_path)) == sorted(expected)
    assert list(spool.iterdir()) == []


def test_what_the_store_refused_ships_once_it_is_back_though_no_line_comes(tmp_path: Path) -> None:
    """A full log disk refused a batch, then downloads stopped: the lines waited for the next
    line, or the stop, before the store was tried again (on a quiet edge, hours; in memory,
    when the spool's disk was full too). Now what was refused is tried each period."""
    store = open_store(f"file://{tmp_path}/logs")
    put = store.put
    refused = 0

    async def full_disk(*args: object, **kwargs: object) -> None:  # stands in for ENOSPC
        nonlocal refused
        refused += 1
        raise StorageError("file://logs: No space left on device (os error 28)")

    store.put = full_disk  # type: ignore[method-assign]
    log = EventLog(store, EventLogConfig("downloads", tmp_path / "spool", period=0.05))

    async def objects() -> int:
        return len(list((tmp_path / "logs" / "downloads").rglob("*.log.gz")))

    async def scenario() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(log.run(stop))
        for n in range(10):
            log.append(f"line {n}")
        deadline = time.monotonic() + 60
        while not refused:
            assert time.monotonic() < deadline, "the batch was never tried"
            await asyncio.sleep(0.02)
        store.put = put  # type: ignore[method-assign]
        await _until_shipped(objects, 1)  # before the stop: the loop tried again by itself
        stop.set()
        await runner

    asyncio.run(scenario())
    assert sorted(_shipped(tmp_path)) == sorted(f"line {n}" for n in range(10))


def test_lines_held_in_memory_ship_once_when_their_put_landed_but_was_answered_500(
    tmp_path: Path, moto_endpoint: str, s3_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The spool refuses lines (a file where its directory was), so they ship from memory
    under a fresh name each attempt; the store writes each object but answers 500 the first
    time (the answer was lost, not the write), and its retry is refused as existing. That
    object is the batch itself: it counts as shipped, and the lines are not kept to ship
    again (they were, with an error line, under another name at the next flush)."""
    spool = tmp_path / "spool"
    config = EventLogConfig("downloads", spool, period=3600, batch_lines=1000)
    failing = FailingS3(moto_endpoint, "PUT", "landed")
    with running(failing) as proxy:
        store = open_store(through(proxy, s3_url), SHIPPING_TIMEOUTS)
        log = EventLog(store, config)
        spool.rmdir()
        spool.write_bytes(b"")

        async def scenario() -> None:
            stop = asyncio.Event()
            runner = asyncio.create_task(log.run(stop))
            for n in range(100):
                log.append(f"download|line {n}")
            stop.set()
            await runner

        asyncio.run(scenario())
    stored = open_store(s3_url)
    keys = [item.key for item in asyncio.run(stored.list())]
    assert len(keys) == 1
    assert failing.seen == {object_path(s3_url, keys[0]): 2}
    lines = gzip.decompress(asyncio.run(stored.get_bytes(keys[0]))).decode().splitlines()
    assert lines == [f"download|line {n}" for n in range(100)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # the spool's refusal, nothing about the store
    assert errors[0].startswith("the downloads spool refuses lines ([Errno 20] Not a directory")
