"""Claims on log objects, so several ingest workers can share one log store.

A claim is a create-only object ``leases/{log key}/{generation}`` holding the owner and an
expiry time. The first worker to create generation 1 owns the log object; a worker that finds
the newest generation expired takes over by creating the next one, and create-only puts
guarantee that exactly one contender wins each generation. There is no renewal: the lease
timeout must exceed the time one object takes to process. A worker that overruns its lease
(or a clock that is off) only costs duplicate work, never duplicate rows, because ingest
writes results under deterministic names with deterministic contents and publish loads each
name once. Expiry uses the owner's wall clock.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass

import orjson

from pythonhosted.storage import NotFound, Store
from pythonhosted.storage.errors import AlreadyExists

PREFIX = "leases/"


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
    """The newest generation of ``key``'s lease and its expiry, or None when unclaimed."""
    found = await store.list(f"{PREFIX}{key}/")
    if not found:
        return None
    newest = found[-1].key
    generation = int(newest.rsplit("/", 1)[1])
    try:
        record = orjson.loads(await store.get_bytes(newest))
    except NotFound:  # released while we looked: treat as expired
        return generation, 0.0
    except orjson.JSONDecodeError:  # torn or foreign: expired, so it cannot block forever
        return generation, 0.0
    return generation, float(record.get("expires", 0.0))


async def claim(store: Store, key: str, owner: str, timeout: float) -> Lease | None:
    """Claim ``key`` for ``timeout`` seconds; None when another worker holds it."""
    newest = await _newest(store, key)
    if newest is None:
        generation = 1
    else:
        if newest[1] > time.time():
            return None
        generation = newest[0] + 1
    record = {"owner": owner, "expires": time.time() + timeout, "generation": generation}
    try:
        await store.put(_lease_key(key, generation), orjson.dumps(record), create_only=True)
    except AlreadyExists:
        return None
    return Lease(key, generation)


async def release(store: Store, key: str) -> None:
    """Drop every generation of ``key``'s lease (after the log object itself is gone)."""
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
