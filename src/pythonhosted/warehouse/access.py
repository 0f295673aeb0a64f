"""Who opens the DuckDB warehouse file when: one writer, readers in between, no lock errors.

DuckDB lets one process hold a database file read-write, or any number hold it read-only,
never both; and inside one process a read-only connection cannot be opened while a
read-write one is (nor the reverse). Publish writes; ``stats`` and the stats web read, from
other processes or (``pythonhosted serve``) from the writer's own process. So:

- **In one process** readers and the writer meet in a registry per file. While the writer
  has the file open, readers open connections of their own to its database (DuckDB shares
  one database per file and configuration within a process): MVCC gives each a snapshot of
  committed data, so reading during a load is safe and never waits. A writer
  about to open the file waits for the process's read-only connections to close (queries are
  short) and new readers wait for it instead of opening the file read-only.
- **Across processes** a writer first creates an *intent file* beside the warehouse
  (``.NAME.writer``, holding its PID) and removes it after closing. Readers do not open the
  file while an intent file of a live process exists, so a stream of short read-only
  queries cannot keep a waiting writer out for ever; a reader that finds one waits (bounded)
  for it to go. An intent file whose process is gone (killed) is ignored.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pythonhosted.warehouse.base import WarehouseError

LOCK_WAIT = 10.0


@dataclass
class _Shared:
    """This process's use of one warehouse file."""

    changed: threading.Condition = field(default_factory=threading.Condition)
    writer: duckdb.DuckDBPyConnection | None = None
    writers_waiting: int = 0
    readers: int = 0  # read-only connections open
    sharers: int = 0  # readers' connections to the writer's database (read-write config)


_FILES: dict[Path, _Shared] = {}
_FILES_LOCK = threading.Lock()


def _shared(path: Path) -> _Shared:
    with _FILES_LOCK:
        return _FILES.setdefault(path.absolute(), _Shared())


def intent_file(path: Path) -> Path:
    return path.parent / f".{path.name}.writer"


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting up to :data:`LOCK_WAIT` seconds while another process holds it."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            if "lock" not in message.lower() or time.monotonic() > deadline:
                raise WarehouseError(f"cannot open warehouse {path}: {message}") from exc
            time.sleep(0.05)
            continue
        con.execute("SET TimeZone = 'UTC'")
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
        except BaseException:
            shared.writers_waiting -= 1
            raise
    intent = intent_file(path)
    try:
        intent.write_text(str(os.getpid()))
        con = connect(path)
    except BaseException:
        intent.unlink(missing_ok=True)
        with shared.changed:
            shared.writers_waiting -= 1
            shared.changed.notify_all()
        raise
    with shared.changed:
        shared.writers_waiting -= 1
        shared.writer = con
        shared.changed.notify_all()
    return con


def close_writer(path: Path, con: duckdb.DuckDBPyConnection) -> None:
    shared = _shared(path)
    with shared.changed:
        if shared.writer is con:
            shared.writer = None
        con.close()
        intent_file(path).unlink(missing_ok=True)
        shared.changed.notify_all()


def _live_intent(path: Path) -> bool:
    """Whether a writer in another live process announced itself."""
    try:
        pid = int(intent_file(path).read_text() or "0")
    except (OSError, ValueError):
        return False
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def reading(path: Path, wait: float = LOCK_WAIT) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that sees committed data, for the duration of the block (see module doc).

    WarehouseError when the file cannot be read within ``wait`` seconds.
    """
    shared = _shared(path)
    deadline = time.monotonic() + wait
    shared_con = None
    with shared.changed:
        while True:
            if shared.writer is not None:
                # A connection of its own to the writer's open database (not a cursor of
                # the writer's connection: closing that closes its cursors, mid-query or
                # not). Made under the lock, so the database cannot close meanwhile.
                shared_con = connect(path)
                shared.sharers += 1
                break
            if not shared.writers_waiting and not shared.sharers:
                shared.readers += 1
                break
            # A writer is about to open the file, or the last one's database is still open
            # for readers (a read-only connection cannot be opened beside it): wait.
            if not shared.changed.wait(max(0.0, deadline - time.monotonic())):
                raise WarehouseError(f"warehouse {path} is being written; try again shortly")
    if shared_con is not None:
        try:
            yield shared_con
        finally:
            with shared.changed:
                shared_con.close()
                shared.sharers -= 1
                shared.changed.notify_all()
        return
    try:
        while _live_intent(path):
            if time.monotonic() > deadline:
                raise WarehouseError(f"warehouse {path} is being written; try again shortly")
            time.sleep(0.02)
        con = connect(path, read_only=True)
        try:
            yield con
        finally:
            con.close()
    finally:
        with shared.changed:
            shared.readers -= 1
            shared.changed.notify_all()
