"""Event lines batched into gzip objects in a log store, with a crash-safe local spool.

Appending a line only touches memory (the request path stays cheap). Every ``sync_interval``
a thread of its own writes the buffered lines to a spool file on local disk and fsyncs it, so
a killed process or a crashed machine loses at most that interval of lines. The thread keeps a
fixed schedule (it aims at the next due time, and writes at once when it has fallen behind)
whatever the event loop is doing: when the spool writes shared the loop with requests and
batch shipping, under load they came up to 2.2 s apart with a 1 s interval.

Every ``period`` seconds, or at ``batch_lines`` lines, the current spool segment is sealed,
gzip-compressed and stored create-only as one object, then deleted. Segments left behind by a
dead process are claimed by an atomic rename and shipped at the next start, so no line is
dropped and no line is shipped twice: a segment's object is named after the segment (its
writer's pid and random part), so a shipper killed between storing it and deleting the segment
leaves a segment whose next put finds its own object there, and the segment is deleted. With a
random name each, that segment was shipped again: its lines counted twice. A segment's
writer, then its shipper, holds an exclusive ``flock`` on it: the lock, not the pid in its
name, says whether its owner lives. Pids are
reused (after a reboot; in a container, where every restart runs the edge under the same small
pid), and a segment named after a pid some other process had taken was never shipped. An
object is written whole or not at all (object stores have no partial puts).

A spool that cannot take lines (a full disk, a file-size limit) loses none of them: a write
that failed part-way is cut back to the last whole line, the lines stay in memory (up to
:data:`HELD_LINES`, the oldest dropped and counted past that) and each flush ships what is held
straight from memory. A full spool disk lost every line for as long as it lasted, and a
partial write left a torn line that merged with the next. One line says the spool failed, one
that it took lines again: no traceback a second.

Object names: ``{prefix}/%Y/%m/%d/%H/%M/{prefix}-{utc time}-{host}-{pid}-{random}.log.gz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gzip
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pythonhosted.boundedlog import failure_log
from pythonhosted.config import Settings
from pythonhosted.errortext import first_line
from pythonhosted.localdirs import ensure_writable
from pythonhosted.storage import StorageError, Store, Timeouts, open_store
from pythonhosted.storage.errors import AlreadyExists
from pythonhosted.web.lifespan import Hook

log = logging.getLogger(__name__)
SEGMENT_SUFFIX = ".spool"
# Lines held in memory while the spool refuses them: two full batches at the default
# batch_lines (~50 MB of download lines); each flush ships them, so only a store that also
# refuses them lets this fill.
HELD_LINES = 200_000
CLAIMED_SUFFIX = ".claimed-"  # followed by the pid of the process shipping it
HIDDEN_GRACE = 60.0  # seconds a hidden (not yet locked) segment is left to its creator
# The log store's bounds: shipping runs off the request path, so a batch may take a slow
# store's while, and a 5xx is retried as a command's are (a batch whose put landed though
# answered 5xx is recognised by its content, :meth:`EventLog._shipped_before`).
SHIPPING_TIMEOUTS = Timeouts(connect=5.0, read=30.0, retries=3)


@dataclass(frozen=True, slots=True)
class EventLogConfig:
    prefix: str  # "downloads" or "simple"
    spool_dir: Path
    period: float = 120.0
    batch_lines: int = 100_000
    compress_level: int = 9
    sync_interval: float = 1.0


class EventLog:
    """Append-only event lines for one process; ``run`` ships them until stopped."""

    def __init__(
        self,
        store: Store,
        config: EventLogConfig,
        on_shipped: Callable[[int], None] | None = None,
        on_failed: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self._on_shipped = on_shipped
        self._on_failed = on_failed
        # A store that is down fails every period's batch: a line each (they were a traceback
        # each, ~40 lines: 574 lines in 10 s on a full disk at a 1 s period) floods the log.
        self._store_failures = failure_log(log, f"{config.prefix} log store")
        self._host = socket.gethostname().replace("-", "_") or "host"
        config.spool_dir.mkdir(parents=True, exist_ok=True)
        # Appended by the event loop, drained by the syncer thread: deque's append and popleft
        # are atomic, so neither side takes a lock per line.
        self._pending: deque[str] = deque()
        self._spool_lock = threading.Lock()  # the segment's descriptor: syncer vs. seal
        self._fd: int | None = None
        self._spooled = 0  # bytes of whole lines in the open segment
        self._refused: str | None = None  # why the spool refuses lines, while it does
        self._segment: Path | None = None
        self._batch_started = 0.0
        self._lines = 0  # appended since the last seal, spooled or not
        self._unshipped = False  # the store refused lines at the last flush: retry a period on
        self._dirty = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._syncer: threading.Thread | None = None
        self._syncer_stop = threading.Event()

    # -- writing ---------------------------------------------------------------------------

    def append(self, line: str) -> None:
        """Add one line (no newline). Memory only: the spool gets it at the next sync."""
        if not self._lines:
            self._batch_started = time.time()
        self._pending.append(line)
        self._lines += 1
        if self._lines >= self.config.batch_lines:
            self._wake.set()

    def _spool(self) -> None:
        """Write pending lines to the spool segment; from here a killed process loses nothing.
        Lines the spool refuses stay pending (:meth:`_hold`).

        Called with ``_spool_lock`` held.
        """
        pending = self._pending
        count = len(pending)
        if not count:
            return
        lines = [pending.popleft() for _ in range(count)]
        data = _encoded(lines)
        try:
            if self._fd is None:
                self._open_segment()
            assert self._fd is not None
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._hold(lines, exc)
            return
        self._spooled += len(data)
        self._dirty = True
        if self._refused is not None:
            log.warning("the %s spool takes lines again", self.config.prefix)
            self._refused = None

    def _hold(self, lines: list[str], exc: OSError) -> None:
        """Keep lines the spool refused, ahead of newer ones, and cut a part-written piece
        back to the last whole line (the next write would extend its torn line)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._spooled)
            except OSError:
                log.warning("could not cut a partial write from %s", self._segment)
        self._pending.extendleft(reversed(lines))
        over = len(self._pending) - HELD_LINES
        if over > 0:
            for _ in range(over):
                self._pending.popleft()
            if self._on_failed is not None:
                self._on_failed(over)
        if self._refused is None:
            self._refused = str(exc)
            log.error(
                "the %s spool refuses lines (%s): holding them in memory, up to %d, and "
                "shipping them from there",
                self.config.prefix,
                exc,
                HELD_LINES,
            )
        if over > 0:
            log.error("dropped the %d oldest %s lines held in memory", over, self.config.prefix)

    def _sync(self) -> None:
        """Spool what is pending and fsync it: bounds what a crash of any kind loses."""
        with self._spool_lock:
            self._spool()
            if self._fd is not None and self._dirty:
                self._dirty = False
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    log.warning("could not fsync spool segment %s: %s", self._segment, exc)

    def _sync_on_schedule(self) -> None:
        """The syncer thread: one sync per interval, each aimed at its due time."""
        interval = self.config.sync_interval
        due = time.monotonic() + interval
        while not self._syncer_stop.wait(max(0.0, due - time.monotonic())):
            try:
                self._sync()
            except Exception:  # never let the thread die: the next tick tries again
                log.exception("spool sync failed")
            due += interval
            now = time.monotonic()
            if due < now:  # fell behind (a slow disk): write again at once, then resume
                due = now

    def _open_segment(self) -> None:
        """Create the segment locked: under a hidden name until the lock is held, so no
        other process's :meth:`ship_leftovers` sees it unlocked and takes it as a dead one."""
        name = f"{self.config.prefix}-{int(self._batch_started * 1e6)}-{os.getpid()}"
        name += f"-{uuid.uuid4().hex[:12]}{SEGMENT_SUFFIX}"
        hidden = self.config.spool_dir / f".{name}"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(hidden, self.config.spool_dir / name)
        except OSError:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        self._segment, self._fd, self._spooled = self.config.spool_dir / name, fd, 0

    def _seal(self) -> tuple[Path, int] | None:
        """Spool what is pending and claim the segment for shipping: its name and its
        descriptor, whose lock the shipper holds until the segment is shipped."""
        with self._spool_lock:
            self._spool()
            if self._fd is None or self._segment is None:
                return None
            try:
                os.fsync(self._fd)
            except OSError as exc:  # what was written is read back from the page cache
                log.warning("could not fsync spool segment %s: %s", self._segment, exc)
            claimed, fd = _claimed_name(self._segment), self._fd
            try:
                os.rename(self._segment, claimed)
            except OSError:
                os.close(fd)
                raise
            finally:
                self._fd, self._segment, self._dirty = None, None, False
            return claimed, fd

    # -- running inside a server's lifespan --------------------------------------------------

    def start(self) -> None:
        """Ship in the background until ``stop``; for an app's lifespan startup."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self.run(self._stop))

    async def stop(self) -> None:
        """Stop shipping after a final flush; for an app's lifespan shutdown."""
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None

    @staticmethod
    def lifespan(log: EventLog | None) -> tuple[Hook, Hook]:
        """(startup, shutdown) hooks for an app that may or may not log events."""

        async def startup() -> None:
            if log is not None:
                log.start()

        async def shutdown() -> None:
            if log is not None:
                await log.stop()

        return startup, shutdown

    # -- shipping --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Ship leftovers, then a batch per period (or when full) until ``stop``; then flush.

        What the store refused (a full disk, an outage) is tried again every period whether
        or not new lines come: it waited for the next line, so once the store was back a quiet
        edge kept the lines of a full disk in memory, or in the spool, until a download came
        or the process stopped (a kill lost those held in memory).

        The spool is kept up to date by a thread for as long as this runs.
        """
        self._syncer_stop.clear()
        self._syncer = threading.Thread(
            target=self._sync_on_schedule, name=f"spool-{self.config.prefix}", daemon=True
        )
        self._syncer.start()
        try:
            await self.ship_leftovers()
            while not stop.is_set():
                stopper = asyncio.ensure_future(stop.wait())
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    [stopper, waker], timeout=self._until_batch_due(), return_when="FIRST_COMPLETED"
                )
                stopper.cancel()
                waker.cancel()
                self._wake.clear()
                if self._unshipped or (
                    self._lines
                    and (
                        self._lines >= self.config.batch_lines
                        or time.time() - self._batch_started >= self.config.period
                    )
                ):
                    try:
                        await self.flush()
                    except Exception as exc:  # the shipper never stops: the next batch tries
                        self._store_failures.note(  # again (a traceback: it is unforeseen)
                            logging.ERROR,
                            type(exc).__name__,
                            "shipping %s lines failed",
                            self.config.prefix,
                            exc_info=True,
                        )
        finally:
            self._syncer_stop.set()
            await asyncio.to_thread(self._syncer.join)
            self._syncer = None
        await self.flush()

    def _until_batch_due(self) -> float:
        """Seconds until the open batch's period ends (a full period when none is open)."""
        if not self._lines:
            return self.config.period
        return max(0.0, self._batch_started + self.config.period - time.time())

    async def flush(self) -> None:
        """Seal the current segment and ship it now, with any earlier segment still unshipped
        (unless the store just refused it: they wait for the next flush, or the next start)."""
        self._lines = 0  # counted on the loop only; later lines belong to the next batch
        self._unshipped = False
        sealed = await asyncio.to_thread(self._seal)  # may wait for the syncer's fsync
        if sealed is not None:
            try:
                shipped = await self._ship(sealed[0])
            finally:
                os.close(sealed[1])
            if not shipped:
                return
        await self.ship_leftovers()
        if self._refused is not None:
            await self._ship_held()

    def _take_held(self) -> list[str]:
        with self._spool_lock:
            return [self._pending.popleft() for _ in range(len(self._pending))]

    async def _ship_held(self) -> None:
        """Ship the lines the spool refused straight from memory (not crash-safe, as they
        never were on disk); kept for the next flush if the store refuses them too."""
        lines = await asyncio.to_thread(self._take_held)
        if lines and not await self._store_batch(_encoded(lines), time.time(), len(lines), None):
            with self._spool_lock:
                self._hold(lines, OSError("the log store refused them"))

    async def ship_leftovers(self) -> None:
        """Ship segments whose writer or shipper died (no one holds their lock), claiming each
        by an atomic rename; remove hidden ones a writer died creating (they hold no line).

        The first segment the store refuses ends the pass: the others wait on disk for the
        next one. A store that hangs costs each attempt its whole timeout (30 s), and an
        outage leaves a segment a period: trying them all made a pass, and the flush of a
        stop, last that many timeouts (an hour's outage: half an hour to stop).
        """
        spool = self.config.spool_dir
        for path in sorted(spool.glob(f".{self.config.prefix}-*")):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime > time.time() - HIDDEN_GRACE:
                    continue  # maybe a writer between creating and locking it
            if (fd := _take_over(path)) is not None:
                path.unlink(missing_ok=True)
                os.close(fd)
        for path in sorted(spool.glob(f"{self.config.prefix}-*")):
            if path == self._segment or (fd := _take_over(path)) is None:
                continue
            try:
                claimed = _claimed_name(path)
                try:
                    os.rename(path, claimed)
                except FileNotFoundError:
                    continue  # its shipper finished with it before we took the lock
                if not await self._ship(claimed):
                    return
            finally:
                os.close(fd)

    async def _ship(self, segment: Path) -> bool:
        """Store ``segment``'s whole lines and delete it; False if the store refused them."""
        data = await asyncio.to_thread(segment.read_bytes)
        # A process killed mid-write may leave a partial last line: it was never complete.
        complete = data[: data.rfind(b"\n") + 1]
        lines = complete.count(b"\n")
        if lines == 0:
            segment.unlink(missing_ok=True)
            return True
        if not await self._store_batch(complete, _segment_time(segment), lines, segment):
            return False
        segment.unlink(missing_ok=True)
        return True

    async def _shipped_before(self, key: str, data: bytes) -> bool:
        """Whether the object at ``key`` holds ``data``: stored by this attempt's earlier
        try or by a shipper killed before it deleted the segment."""
        try:
            stored = await self.store.get_bytes(key)
            return await asyncio.to_thread(gzip.decompress, stored) == data
        except (StorageError, OSError, EOFError, zlib.error):  # not a whole gzip of lines
            return False

    async def _store_batch(
        self, data: bytes, started: float, lines: int, segment: Path | None
    ) -> bool:
        """Store ``lines`` whole lines as one gzip object, create-only: from a spool
        ``segment``, or from memory (None). True once stored, counted and logged."""
        key = self._object_key(started, segment)
        body = await asyncio.to_thread(gzip.compress, data, self.config.compress_level, mtime=0)
        try:
            await self.store.put(key, body, create_only=True)
        except AlreadyExists:
            # Ours when it holds these lines: a shipper killed before it deleted the segment,
            # or the store client's retry of a put that landed though it was answered 5xx.
            if not await self._shipped_before(key, data):
                kept = f"spool segment {segment}" if segment is not None else "them in memory"
                log.error("log object %s already exists; keeping %s", key, kept)
                return False
            log.info("log object %s was stored before", key)
        except StorageError as exc:
            self._store_failures.note(
                logging.ERROR,
                type(exc).__name__,
                "could not store log batch %s; will retry: %s",
                key,
                first_line(exc),
            )
            if self._on_failed is not None:
                self._on_failed(0)
            self._unshipped = True
            return False
        held = "" if segment is not None else " held in memory"
        log.info("stored %d %s lines%s as %s", lines, self.config.prefix, held, key)
        if self._on_shipped is not None:
            self._on_shipped(lines)
        return True

    def _object_key(self, started: float, segment: Path | None) -> str:
        """A new name for lines held in memory; the segment's own name for a segment's, the
        same for every attempt at shipping it (its writer's pid and random part)."""
        stamp = time.gmtime(started)
        folder = time.strftime("%Y/%m/%d/%H/%M", stamp)
        moment = time.strftime("%Y-%m-%dT%H-%M-%S", stamp) + f".{int(started * 1000) % 1000:03d}"
        writer = _segment_writer(segment) if segment is not None else None
        unique = f"{self._host}-{writer or f'{os.getpid()}-{uuid.uuid4().hex[:16]}'}"
        return f"{self.config.prefix}/{folder}/{self.config.prefix}-{moment}-{unique}.log.gz"

    def pending_segments(self) -> int:
        return sum(1 for _ in self.config.spool_dir.glob(f"{self.config.prefix}-*"))


def _encoded(lines: list[str]) -> bytes:
    """Lines as a spool segment or batch object holds them (surrogates: bytes as they came)."""
    return ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")


def event_log_from_settings(
    settings: Settings,
    prefix: str,
    on_shipped: Callable[[int], None] | None = None,
    on_failed: Callable[[int], None] | None = None,
) -> EventLog | None:
    """The event log for ``prefix`` lines as ``[files]`` configures it; None without a log store.

    Every writer (the files edge, the index) shares the log store and batching settings; each
    prefix gets its own spool directory so their segments never mix.
    """
    files = settings.files
    if not files.logs:
        return None
    spool = (files.log_spool_dir or settings.data_dir / "spool") / prefix
    ensure_writable(spool, "files.log_spool_dir" if files.log_spool_dir else "data_dir")
    return EventLog(
        open_store(files.logs, SHIPPING_TIMEOUTS),
        EventLogConfig(
            prefix=prefix,
            spool_dir=spool,
            period=files.log_period,
            batch_lines=files.log_batch_lines,
            compress_level=files.log_compress_level,
            sync_interval=files.log_spool_sync_interval,
        ),
        on_shipped=on_shipped,
        on_failed=on_failed,
    )


def _claimed_name(segment: Path) -> Path:
    stem = segment.name.split(".", 1)[0]
    return segment.with_name(f"{stem}{CLAIMED_SUFFIX}{os.getpid()}")


def _segment_time(segment: Path) -> float:
    """The time the segment was opened, from its name (microseconds since the epoch)."""
    with contextlib.suppress(ValueError, IndexError):
        return int(segment.name.split("-")[1]) / 1e6
    return time.time()


def _segment_writer(segment: Path) -> str | None:
    """``{pid}-{random}`` of the process that wrote the segment, from its name."""
    parts = segment.name.split(".", 1)[0].split("-")
    return "-".join(parts[2:]) if len(parts) == 4 else None


def _take_over(segment: Path) -> int | None:
    """A descriptor of ``segment`` holding its lock, when no living process holds it (its
    writer and shipper died: the kernel let their locks go); None while one does, or once
    the segment is gone."""
    try:
        fd = os.open(segment, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
