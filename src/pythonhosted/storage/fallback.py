"""The primary ▸ archive pair (files-edge spec rules 5, 6 and 8).

A key missing from the primary (404/403) or a primary that fails (5xx, timeout, refused) is
read from the archive; while a primary that failed lookups in a row is skipped
(:mod:`.breaker`), the archive is asked first and the primary only for what it lacks. Both
missing: NotFound. Anything else: StoreUnavailable, because a primary that could not answer
may still hold the key and a 404 would be cached by clients.

Each use of the archive is logged within bounds (:mod:`pythonhosted.boundedlog`): every 404
under ``/packages/`` is one, and a scan of made-up paths logged a line per request (47,515
lines in five minutes of mixed traffic); ``on_fallback`` (the edge's metrics) sees every one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from pythonhosted.boundedlog import BoundedLog
from pythonhosted.storage.breaker import Breaker
from pythonhosted.storage.errors import NotFound, StorageError, StoreUnavailable
from pythonhosted.storage.stores import ObjectInfo, Store

log = logging.getLogger(__name__)


class Backend(StrEnum):
    PRIMARY = "primary"
    ARCHIVE = "archive"


@dataclass(frozen=True, slots=True)
class Fallback:
    """One use of the archive: why the primary was skipped and whether the archive answered."""

    reason: str  # "missing" or "unavailable"
    outcome: str  # "served", "missing" or "unavailable"


class StorePair:
    def __init__(
        self,
        primary: Store,
        archive: Store | None = None,
        on_fallback: Callable[[Fallback], None] | None = None,
    ) -> None:
        self.primary = primary
        self.archive = archive
        self.on_fallback = on_fallback
        self.breaker = Breaker(f"the primary store ({primary.label})")
        self._log = BoundedLog(
            log,
            "archive fallback for %d more keys in %g s (not logged one by one): %s",
            "fallbacks",
        )

    def store(self, backend: Backend) -> Store | None:
        return self.primary if backend is Backend.PRIMARY else self.archive

    async def info(
        self, key: str, force: Backend | None = None
    ) -> tuple[ObjectInfo, Store, Backend]:
        """Locate ``key``: its info, the store that has it and which one that is."""
        if force is not None:
            store = self.store(force)
            if store is None:
                raise StoreUnavailable(f"no {force} store configured")
            return await store.info(key), store, force
        archive = self.archive
        if archive is None:
            return await self.primary.info(key), self.primary, Backend.PRIMARY
        if not self.breaker.allows():
            return await self._archive_first(key, archive)
        try:
            return await self._asked(key), self.primary, Backend.PRIMARY
        except StorageError as primary_error:
            try:
                info = await archive.info(key)
            except StorageError as archive_error:
                self._neither(key, primary_error, archive_error)
            reason = "missing" if isinstance(primary_error, NotFound) else "unavailable"
            self._report(key, Fallback(reason, "served"), primary_error)
            return info, archive, Backend.ARCHIVE

    async def _archive_first(self, key: str, archive: Store) -> tuple[ObjectInfo, Store, Backend]:
        """While the primary is skipped (:mod:`.breaker`): the archive's copy, and the primary
        asked only for what the archive cannot give (a file uploaded since its last copy)."""
        try:
            info = await archive.info(key)
        except StorageError as archive_error:
            try:
                return await self._asked(key), self.primary, Backend.PRIMARY
            except StorageError as primary_error:
                self._neither(key, primary_error, archive_error)
        skipped = StoreUnavailable(f"{self.primary.label}: skipped after failing in a row")
        self._report(key, Fallback("unavailable", "served"), skipped)
        return info, archive, Backend.ARCHIVE

    async def _asked(self, key: str) -> ObjectInfo:
        """The primary's lookup, its outcome told to the breaker."""
        breaker = self.breaker
        try:
            info = await self.primary.info(key)
        except NotFound:
            breaker.answered()
            raise
        except StoreUnavailable:
            breaker.failed()
            raise
        except BaseException:
            breaker.abandoned()
            raise
        breaker.answered()
        return info

    def _neither(
        self, key: str, primary_error: StorageError, archive_error: StorageError
    ) -> NoReturn:
        """Neither store gave ``key``: NotFound when both said so, else StoreUnavailable (a
        store that could not answer may hold it, and a 404 would be cached by clients)."""
        reason = "missing" if isinstance(primary_error, NotFound) else "unavailable"
        outcome = "missing" if isinstance(archive_error, NotFound) else "unavailable"
        self._report(key, Fallback(reason, outcome), primary_error)
        if reason == outcome == "missing":
            raise archive_error
        archive_said = "missing" if outcome == "missing" else str(archive_error)
        raise StoreUnavailable(f"primary: {primary_error}; archive: {archive_said}") from None

    def _report(self, key: str, fallback: Fallback, cause: StorageError) -> None:
        self._log.note(
            logging.INFO if fallback.reason == "missing" else logging.WARNING,
            f"{fallback.reason}-{fallback.outcome}",
            "archive fallback for %s: primary %s (%s), archive %s",
            key,
            fallback.reason,
            cause,
            fallback.outcome,
        )
        if self.on_fallback is not None:
            self.on_fallback(fallback)
