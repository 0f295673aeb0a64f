"""Claims on log objects, so several ingest workers can share one log store.

A claim is a create-only object ``leases/{log key}/{generation}`` holding the owner and an
expiry time. The first worker to create generation 1 owns the log object; a worker that finds
the newest generation expired takes over by creating the next one, and create-only puts
guarantee that exactly one contender wins each generation. Expiry uses the owner's wall clock.

**Renewal.** While a worker processes an object, :class:`Keeper` renews its lease every
``timeout / 3`` by creating the *next* generation itself (:func:`renew`), with a fresh expiry.
Renewal is the same create-only put as a takeover, so it is a compare-and-swap on "nobody
moved past my generation": if generation g+1 already exists, a contender took the object over
after our lease expired (we stalled, or clocks disagree) and the renewal fails, atomically,
instead of both workers believing they hold it. Overwriting our own generation object was the
alternative; it is not atomic: a contender that read the old expiry creates g+1 while we
overwrite g, and both go on believing they hold the object.

**Generations stay until the object is done.** A renewal deletes nothing: every generation of
a holding stays until :func:`release` drops them all (oldest first) once the log object is
gone. A renewal used to delete its previous generation, and then a contender's listing could
come back empty while the object was held: a local directory's listing reads the names and
then each file's size and time, and a generation deleted in between is left out, so a listing
that read ``[g]`` just before the holder created g+1 and deleted g found nothing. The
contender took that for "never claimed" and created generation 1 (long deleted), and two
workers held the object; whichever finished first released every generation, and the other
one's next renewal found its own generation gone: "lost the lease" with 120 s leases, at load
11-17 (measured: 20 of 48,000 listings empty beside a worker renewing every millisecond, at
load 9). With nothing deleted while the object is held, a listing can only miss generations
created while it runs, so the newest it shows is at most the holder's: its successor exists
(the contender's create fails) or is the one the holder creates next (the compare-and-swap
above). Races:

- A contender that listed before our renewal reads generation g, or an older one: it is
  either not expired, or its successor exists and the contender's create fails.
- A contender that took over (created g+1) while we stalled: our renewal finds g+1 and fails.
- A contender that took over *and finished*: its release (or a sweep) deleted every
  generation, in ascending order, so g+1 is free again and our put succeeds. That is why a
  renewal then checks that our generation g still exists: release deletes g before g+1, so
  whenever g+1 was free, g is already gone; we delete the stray g+1 and report the lease lost.
- A create-only put whose answer was lost (timed out but written, or retried by the store
  client and then refused as taken) finds its generation there with our own name in it: a
  claim takes it as won, a renewal as renewed (and renews past it, for a fresh expiry). The
  owner names a process, which holds an object under one lease at a time.

A worker that loses its lease stops before writing or deleting anything more for the object:
:meth:`Keeper.confirm` renews right before it writes the results and right before it deletes
the log object. The window that remains, a takeover between a successful renewal and the
write after it, needs the worker to stall for a whole lease timeout in between, and costs only
duplicate work, never duplicate rows: ingest writes results under deterministic names with
deterministic contents, and publish loads each name once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from types import TracebackType

import orjson

from pythonhosted.pipeline import LEASES
from pythonhosted.storage import NotFound, StorageError, Store
from pythonhosted.storage.errors import AlreadyExists

PREFIX = LEASES
LOOKS = 4  # listings of a lease whose newest generation keeps vanishing as it is read
log = logging.getLogger(__name__)


def worker_id() -> str:
    """This process, as lease owners are recorded: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim this worker holds on one log object."""

    key: str
    generation: int


def _lease_key(key: str, generation: int) -> str:
    return f"{PREFIX}{key}/{generation:010d}"


async def _newest(store: Store, key: str) -> tuple[int, float] | None:
    """The newest generation of ``key``'s lease and its expiry, or None when unclaimed.

    A generation gone between the listing and its read was released (or swept): the key is
    listed again (a few times; then it counts as expired, so it cannot block forever).
    """
    for _ in range(LOOKS):
        found = await store.list(f"{PREFIX}{key}/")
        if not found:
            return None
        newest = found[-1].key
        generation = int(newest.rsplit("/", 1)[1])
        try:
            record = orjson.loads(await store.get_bytes(newest))
        except NotFound:
            continue
        except orjson.JSONDecodeError:  # torn or foreign: expired, so it cannot block forever
            return generation, 0.0
        return generation, float(record.get("expires", 0.0))
    return generation, 0.0


async def _create(store: Store, lease: Lease, owner: str, timeout: float) -> bool:
    """Create generation ``lease.generation``; False when it exists already."""
    record = {"owner": owner, "expires": time.time() + timeout, "generation": lease.generation}
    try:
        await store.put(
            _lease_key(lease.key, lease.generation), orjson.dumps(record), create_only=True
        )
    except AlreadyExists:
        return False
    return True


async def claim(store: Store, key: str, owner: str, timeout: float) -> Lease | None:
    """Claim ``key`` for ``timeout`` seconds; None when another worker holds it."""
    newest = await _newest(store, key)
    if newest is None:
        generation = 1
    else:
        if newest[1] > time.time():
            return None
        generation = newest[0] + 1
    lease = Lease(key, generation)
    if await _create(store, lease, owner, timeout):
        return lease
    record = await _record(store, lease)
    return lease if record is not None and record.get("owner") == owner else None


class LeaseLost(Exception):
    """A renewal found the lease taken over or released; the message says how."""


async def _record(store: Store, lease: Lease) -> dict[str, object] | None:
    """Generation ``lease.generation``'s record ({} when unreadable); None when it is gone."""
    try:
        record = orjson.loads(await store.get_bytes(_lease_key(lease.key, lease.generation)))
    except NotFound:
        return None
    except orjson.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def _taken(generation: int, record: dict[str, object]) -> str:
    """Why a renewal lost to an existing generation, and what happens to the object."""
    expires = record.get("expires")
    if isinstance(expires, int | float):
        left = expires - time.time()
        expiry = f"expires in {left:.0f} s" if left >= 0 else f"expired {-left:.0f} s ago"
    else:
        expiry = "no expiry"
    return (
        f"generation {generation} is {record.get('owner', 'unknown')}'s ({expiry}): the object "
        "is left to that worker, or to whoever takes it over if that one dies"
    )


async def _released(store: Store, key: str) -> str:
    """Why a renewal found its generation released, and what happens to the object: the
    log object tells a taker that finished it from an expired lease swept."""
    try:
        await store.info(key)
    except NotFound:
        return "released by a worker that took the object over and finished it: it is done"
    except StorageError as exc:
        return f"released (whether the object is done is unknown: {exc})"
    return "released (swept once expired) with the object still there: a later pass does it"


async def renew(store: Store, lease: Lease, owner: str, timeout: float) -> Lease:
    """Extend ``lease`` by ``timeout`` seconds from now: the next generation, created.

    Atomic against a contender taking over; then checks that our own generation was not
    released under us (see the module docstring). Raises LeaseLost when the lease is lost.
    """
    successor = Lease(lease.key, lease.generation + 1)
    if not await _create(store, successor, owner, timeout):
        record = await _record(store, successor)
        if record is None:  # created by a taker, gone since: it finished and released
            raise LeaseLost(await _released(store, lease.key))
        if record.get("owner") == owner:  # our own earlier try, whose answer was lost
            return await renew(store, successor, owner, timeout)
        raise LeaseLost(_taken(successor.generation, record))
    try:
        await store.info(_lease_key(lease.key, lease.generation))
    except NotFound:  # a taker finished and released every generation: ours is a stray
        await store.delete(_lease_key(successor.key, successor.generation))
        raise LeaseLost(await _released(store, lease.key)) from None
    return successor


class Keeper:
    """Keeps a claimed lease alive while its object is processed.

    ``async with Keeper(...)`` runs a background task that renews every ``timeout / 3``
    (``interval``), so an object that takes longer than the lease timeout is not taken over.
    Before writing results and before deleting the log object the worker calls
    :meth:`confirm`, which renews at once: a step taken after a successful confirm has a whole
    lease timeout to finish in before any contender may take over. Once a renewal fails the
    lease is lost for good.
    """

    def __init__(
        self,
        store: Store,
        lease: Lease,
        owner: str,
        timeout: float,
        interval: float | None = None,
    ) -> None:
        self.store = store
        self.lease = lease
        self.owner = owner
        self.timeout = timeout
        self.interval = timeout / 3 if interval is None else interval
        self.lost = False
        self._lock = asyncio.Lock()  # one renewal at a time: two would race for one generation
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Keeper:
        self._task = asyncio.create_task(self._renew_periodically())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        # gather collects the task's CancelledError but still raises our own cancellation.
        await asyncio.gather(self._task, return_exceptions=True)

    async def _renew_periodically(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.interval)
            try:
                await self.confirm()
            except StorageError as exc:  # the lease may still be good: try again next time
                log.warning("cannot renew the lease on %s: %s", self.lease.key, exc)

    async def confirm(self) -> bool:
        """Renew now; False once the lease is lost (nothing more may be written then)."""
        async with self._lock:
            if not self.lost:
                try:
                    self.lease = await renew(self.store, self.lease, self.owner, self.timeout)
                except LeaseLost as exc:
                    self.lost = True
                    log.warning(
                        "lost the lease on %s (generation %d): %s; this worker writes and "
                        "deletes nothing more for it (counted busy)",
                        self.lease.key,
                        self.lease.generation,
                        exc,
                    )
            return not self.lost


async def release(store: Store, key: str) -> None:
    """Drop every generation of ``key``'s lease (after the log object itself is gone).

    Oldest first: a renewal relies on its own generation disappearing before the next one
    (see the module docstring). The only delete of a held object's generations.
    """
    for item in await store.list(f"{PREFIX}{key}/"):
        await store.delete(item.key)


async def sweep(store: Store, live: set[str]) -> int:
    """Delete expired leases of log objects that no longer exist (a worker died between
    deleting the log and releasing); returns how many leases were dropped."""
    held: dict[str, list[str]] = {}
    for item in await store.list(PREFIX):
        log_key = item.key[len(PREFIX) :].rsplit("/", 1)[0]
        held.setdefault(log_key, []).append(item.key)
    dropped = 0
    for log_key, lease_keys in held.items():
        if log_key in live:
            continue
        newest = await _newest(store, log_key)
        if newest is not None and newest[1] <= time.time():
            for lease_key in lease_keys:
                await store.delete(lease_key)
                dropped += 1
    return dropped
