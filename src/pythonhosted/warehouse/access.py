"""Who opens the DuckDB warehouse file when: one writer, readers in between, no lock errors.

DuckDB lets one process hold a database file read-write, or any number hold it read-only,
never both; and inside one process a read-only connection cannot be opened while a
read-write one is (nor the reverse). Within a process, connections to a file share one open
database while any is open, and a new connection to an open database is cheap (tens of
microseconds) where opening the file is not (tens of milliseconds at 50M rows: the catalog
and metadata are read). Publish writes; ``stats`` and the stats web read, from other
processes or (``pythonhosted serve``) from the writer's own process. So:

- **In one process** readers and the writer meet in a registry per file. While the writer
  has the file open, readers open connections of their own to its database: MVCC gives each
  a snapshot of committed data, so reading during a load is safe and never waits. (Not
  cursors of the writer's connection: closing it closes them, mid-query or not.)
- **Between loads** the file is open read-only, kept open by an *anchor* connection so each
  reader's own connection is cheap. The anchor is closed as soon as no reader is using the
  database and a writer wants the file (in this process, or another: see below), or after
  :data:`IDLE_CLOSE` seconds without readers, which also lets other processes write.
- **Across processes** a writer first creates an *intent file* beside the warehouse
  (``.NAME.writer``, holding its PID), holds an exclusive ``flock`` on it while it writes and
  removes it after closing. Readers here do not open the file while another process holds
  that lock, and the anchor is closed within :data:`WATCH_EVERY` seconds of one appearing, so
  reads cannot keep a writer out; a reader that finds one waits (bounded) for it to go. An
  intent file nobody holds (its writer was killed) is ignored: the lock, not the PID, says
  whether its writer lives, since PIDs are reused (after a reboot, or in a container, where a
  restarted process gets the same small PID), and a killed writer's file naming a reused PID
  kept every reader out until the next publish.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pythonhosted.errortext import first_line
from pythonhosted.warehouse import engine
from pythonhosted.warehouse.base import WarehouseError

LOCK_WAIT = 10.0
IDLE_CLOSE = 2.0
WATCH_EVERY = 0.05


@dataclass
class _Shared:
    """This process's use of one warehouse file."""

    path: Path
    changed: threading.Condition = field(default_factory=threading.Condition)
    writer: duckdb.DuckDBPyConnection | None = None
    writers_waiting: int = 0
    anchor: duckdb.DuckDBPyConnection | None = None  # keeps the read-only database open
    readers: int = 0  # read-only connections in use
    sharers: int = 0  # readers' connections to the writer's database (read-write config)
    intent: int | None = None  # the writer's locked intent file
    last_read: float = 0.0

    def close_anchor(self) -> None:
        """Call with ``changed`` held and no reader in the read-only database."""
        if self.anchor is not None:
            self.anchor.close()
            self.anchor = None
            self.changed.notify_all()

    def watch(self) -> None:
        """Close the anchor when idle or a writer wants the file (a daemon thread, running
        while the anchor is open)."""
        while True:
            time.sleep(WATCH_EVERY)
            with self.changed:
                if self.anchor is None:
                    return
                if self.readers:
                    continue
                idle = time.monotonic() - self.last_read > IDLE_CLOSE
                if idle or self.writers_waiting or _live_intent(self.path):
                    self.close_anchor()
                    return


_FILES: dict[Path, _Shared] = {}
_FILES_LOCK = threading.Lock()


def _shared(path: Path) -> _Shared:
    key = path.absolute()
    with _FILES_LOCK:
        return _FILES.setdefault(key, _Shared(key))


def intent_file(path: Path) -> Path:
    return path.parent / f".{path.name}.writer"


def connect(
    path: Path, *, read_only: bool = False, opening: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting up to :data:`LOCK_WAIT` seconds while another process holds it.

    ``opening``: the connection opens the database (the writer's, or the readers' anchor), so
    the engine's settings (:mod:`.engine`) are applied to it; readers' own connections share
    that database and skip the statements.
    """
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            message = first_line(exc)
            if "lock" not in message.lower() or time.monotonic() > deadline:
                raise WarehouseError(f"cannot open warehouse {path}: {message}") from exc
            time.sleep(0.05)
            continue
        con.execute("SET TimeZone = 'UTC'")
        if opening:
            for statement in engine.statements():
                con.execute(statement)
        return con


def open_writer(path: Path) -> duckdb.DuckDBPyConnection:
    """The file opened read-write, announced to readers here and in other processes."""
    shared = _shared(path)
    deadline = time.monotonic() + LOCK_WAIT
    with shared.changed:
        shared.writers_waiting += 1
        try:
            while shared.readers and shared.changed.wait(max(0.0, deadline - time.monotonic())):
                pass
            shared.close_anchor()
            shared.intent = _announce(path, deadline)
            con = connect(path, opening=True)
        except BaseException:
            _withdraw(shared)
            shared.writers_waiting -= 1
            shared.changed.notify_all()
            raise
        shared.writers_waiting -= 1
        shared.writer = con
        shared.changed.notify_all()
    return con


def close_writer(path: Path, con: duckdb.DuckDBPyConnection) -> None:
    """Checkpoint, then close under the registry's lock.

    DuckDB checkpoints its write-ahead log when the database closes: seconds after a large
    load (7.7-12.2 s in ``bench/probe_serve.py``), and that ran under the lock every reader
    needs to open the file, so each cold stats-web answer waited for it. The checkpoint now
    runs first, outside the lock, while this connection is still the writer: readers
    meanwhile open connections to its database and read their snapshot, as during a load.
    The close under the lock then finds the log empty: milliseconds. A checkpoint that fails
    (a transaction left open) leaves the work to the close, as before.
    """
    with contextlib.suppress(duckdb.Error):
        con.execute("CHECKPOINT")
    shared = _shared(path)
    with shared.changed:
        if shared.writer is con:
            shared.writer = None
        con.close()
        _withdraw(shared)
        shared.changed.notify_all()


def _announce(path: Path, deadline: float) -> int:
    """The intent file created (or taken over from a dead writer), locked and holding this
    PID; waits until ``deadline`` while a writer in another process holds it."""
    intent = intent_file(path)
    while True:
        fd = os.open(intent, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(intent).st_ino:  # not one its writer removed
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                return fd
        except (BlockingIOError, FileNotFoundError):
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if time.monotonic() > deadline:
            raise WarehouseError(f"cannot open warehouse {path}: another process writes it")
        time.sleep(WATCH_EVERY)


def _withdraw(shared: _Shared) -> None:
    """Remove the writer's intent file, then let its lock go (in that order: a reader never
    finds the file unlocked while this writer still has the warehouse open)."""
    if shared.intent is not None:
        intent_file(shared.path).unlink(missing_ok=True)
        os.close(shared.intent)
        shared.intent = None


def _live_intent(path: Path) -> bool:
    """Whether a writer in another live process announced itself: holds its intent's lock."""
    try:
        fd = os.open(intent_file(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0) != str(os.getpid()).encode()  # this process's own writer
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def reading(path: Path, wait: float = LOCK_WAIT) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that sees committed data, for the duration of the block (see module doc).

    WarehouseError when the file cannot be read within ``wait`` seconds.
    """
    shared = _shared(path)
    deadline = time.monotonic() + wait

    def wait_a_little() -> None:
        shared.changed.wait(min(WATCH_EVERY, max(0.0, deadline - time.monotonic())))
        if time.monotonic() >= deadline:
            raise WarehouseError(f"warehouse {path} is being written; try again shortly")

    with shared.changed:
        while True:
            if shared.writer is not None:
                # Made under the lock, so the writer's database cannot close meanwhile.
                con = connect(path)
                shared.sharers += 1
                sharing = True
                break
            if shared.writers_waiting or shared.sharers:
                # A writer is about to open the file, or the last one's database is still
                # open for readers (no read-only connection can be opened beside it).
                wait_a_little()
                continue
            if _live_intent(path):
                wait_a_little()  # another process is about to write, or writing
                continue
            if shared.anchor is None:
                shared.anchor = connect(path, read_only=True, opening=True)
                threading.Thread(target=shared.watch, name="warehouse-anchor", daemon=True).start()
            con = connect(path, read_only=True)
            shared.readers += 1
            shared.last_read = time.monotonic()
            sharing = False
            break
    try:
        yield con
    finally:
        with shared.changed:
            con.close()
            if sharing:
                shared.sharers -= 1
            else:
                shared.readers -= 1
                shared.last_read = time.monotonic()
            shared.changed.notify_all()
