"""A local directory as a store: obstore's LocalStore for the bytes, sidecars for metadata.

obstore's LocalStore keeps no attributes, so each object's content type and custom metadata
live in a sidecar object, ``.meta/{key}.json`` (listings leave them out). Callers that can
use a file directly (the files edge's ``pread``, docs hosting's ``stat``, DuckDB
loading result files in place) ask :meth:`DirectoryStore.local_path`, or the root.

Sidecar order: an overwrite writes the sidecar first, so a visible object always has its
metadata; a create-only put writes the data first and the sidecar only if the data won, so
a put that loses the race never touches the winner's metadata. In that case a new object is
visible for a moment without its metadata; uploads make it reachable only through their
catalog record, written after both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import obstore
import orjson
from obstore.store import LocalStore

from pythonhosted.storage import walk
from pythonhosted.storage.errors import NotFound, StoreUnavailable
from pythonhosted.storage.stores import (
    META_PREFIX,
    ObjectInfo,
    Store,
    Timeouts,
    check_key,
    translate,
)
from pythonhosted.threads import short_io

log = logging.getLogger(__name__)

# Where streamed writes are assembled before they are renamed into place.
STAGING_PREFIX = f"{META_PREFIX}.staging/"
# A staging file this much older than its last write is a killed process's: no streamed
# write pauses for a day (a write in progress keeps its file's mtime fresh).
STAGING_MAX_AGE = 24 * 3600.0


def sidecar_of(key: str) -> str:
    return f"{META_PREFIX}{key}.json"


class DirectoryStore(Store):
    def __init__(self, url: str, root: Path, *, timeouts: Timeouts | None = None) -> None:
        super().__init__(url, LocalStore(root), timeouts=timeouts)
        self.root = root

    def local_path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def info(self, key: str) -> ObjectInfo:
        check_key(key)
        return await short_io(self._info, key)  # on every cold download's path

    def _info(self, key: str) -> ObjectInfo:
        path = self.root / key
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise NotFound(f"{self.label}: {key}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"{self.label}: {exc}") from exc
        if not path.is_file():
            raise NotFound(f"{self.label}: {key}")
        sidecar: dict[str, Any] = {}
        try:
            sidecar = orjson.loads((self.root / sidecar_of(key)).read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, orjson.JSONDecodeError) as exc:
            raise StoreUnavailable(f"{self.label}: unreadable metadata for {key}: {exc}") from exc
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            content_type=sidecar.get("content_type"),
            metadata=sidecar.get("metadata", {}),
            local_path=path,
        )

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        create_only: bool = False,
    ) -> None:
        check_key(key)

        async def write(mode: Literal["create", "overwrite"]) -> None:
            await obstore.put_async(self.backend, key, data, mode=mode)

        await self._with_sidecar(key, write, content_type, metadata, create_only)

    async def _put_parts(
        self,
        key: str,
        parts: AsyncIterator[bytes],
        content_type: str | None,
        metadata: Mapping[str, str] | None,
        create_only: bool,
    ) -> None:
        """The parts go to a staging file under ``.meta/`` (which listings leave out), renamed
        into place once whole: a link that fails when the key is taken for ``create_only``,
        which obstore's own multipart put (an overwriting rename) cannot do. A failed or
        interrupted write removes its staging file; only a killed process leaves one there,
        never seen by a reader."""
        staging = f"{STAGING_PREFIX}{secrets.token_hex(16)}"
        await asyncio.to_thread(self._sweep_staging)
        try:
            await self._multipart(staging, parts, None)

            async def place(mode: Literal["create", "overwrite"]) -> None:
                overwrite = mode == "overwrite"
                await obstore.rename_async(self.backend, staging, key, overwrite=overwrite)

            await self._with_sidecar(key, place, content_type, metadata, create_only)
        finally:
            (self.root / staging).unlink(missing_ok=True)

    def _sweep_staging(self) -> None:
        """Remove the staging files killed processes left (older than ``STAGING_MAX_AGE``):
        nothing else ever would, and a crash loop of large uploads would fill the disk with
        files no listing shows. One directory scan per streamed write of several parts."""
        cutoff = time.time() - STAGING_MAX_AGE
        try:
            entries = list(os.scandir(self.root / STAGING_PREFIX))
        except FileNotFoundError:
            return
        for entry in entries:
            with contextlib.suppress(OSError):  # gone already: another sweep, or renamed
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)

    async def _with_sidecar(
        self,
        key: str,
        write: Callable[[Literal["create", "overwrite"]], Awaitable[None]],
        content_type: str | None,
        metadata: Mapping[str, str] | None,
        create_only: bool,
    ) -> None:
        """``write`` the object, and its sidecar in the order the module docstring gives."""
        sidecar = (
            orjson.dumps({"content_type": content_type, "metadata": dict(metadata or {})})
            if content_type or metadata
            else None
        )
        mode: Literal["create", "overwrite"] = "create" if create_only else "overwrite"
        try:
            if sidecar is not None and not create_only:
                await obstore.put_async(self.backend, sidecar_of(key), sidecar)
            await write(mode)
            if sidecar is not None and create_only:
                await obstore.put_async(self.backend, sidecar_of(key), sidecar)
        except Exception as exc:
            raise translate(exc, self.label, write=True) from exc

    async def copy(self, source: str, destination: str) -> None:
        check_key(source)
        check_key(destination)
        try:  # the sidecar first, as an overwriting put writes it
            if await short_io((self.root / sidecar_of(source)).is_file):
                await obstore.copy_async(self.backend, sidecar_of(source), sidecar_of(destination))
            else:
                with contextlib.suppress(FileNotFoundError):
                    await obstore.delete_async(self.backend, sidecar_of(destination))
            await obstore.copy_async(self.backend, source, destination)
        except Exception as exc:
            raise translate(exc, self.label, write=True) from exc

    def _names_of(self, key: str) -> list[str]:
        return [key, sidecar_of(key)]

    async def list_names(self, prefix: str, *, large: bool = False) -> list[str]:
        """As :meth:`Store.list_names`, leaving out directories that hold no file: a delete
        leaves its directories behind (removing them would race a concurrent put creating
        them: obstore's put fails when a directory it just made is gone), and a directory
        stands for no object here. ``large``: walked in a process of its own (:mod:`.walk`),
        which is killed if the listing is cancelled."""
        check_key(prefix + "x")
        directory = self.root / prefix
        try:
            names = await _names_below(directory, large)
        except OSError as exc:
            raise StoreUnavailable(f"{self.label}: {exc}") from exc
        if directory == self.root:
            names = [name for name in names if name != META_PREFIX.rstrip("/")]
        return names


# What the walking process's output is read in: each piece is split into names between two
# turns of the event loop (a whole million-name output at once held it ~40 ms).
READ_BYTES = 256 * 1024


async def _names_below(directory: Path, large: bool) -> list[str]:
    """:func:`.walk.names_below`: in a process of its own when ``large`` and one can be
    started, else in a thread."""
    if large:
        try:
            return await _walked_apart(directory)
        except WalkNotStarted as exc:
            _warn_walking_here(exc)
    return await asyncio.to_thread(walk.names_below, str(directory))


class WalkNotStarted(OSError):
    """The walking process could not be started: the interpreter's file is gone (a deploy
    replaced the virtualenv under a running server), not executable for this user, or the
    process table or memory is full."""


_walked_here_warned = False


def _warn_walking_here(exc: WalkNotStarted) -> None:
    """Once per process: every large listing after it walks in a thread (the listing is
    still right; only a cancelled one can no longer be killed)."""
    global _walked_here_warned
    if not _walked_here_warned:
        _walked_here_warned = True
        log.warning("%s; large listings walk in this process instead", exc)


async def _walked_apart(directory: Path) -> list[str]:
    """:func:`.walk.names_below` of ``directory`` in a child process (sorted, NUL-separated
    on its stdout), read a piece at a time; a cancelled listing kills the child."""
    if not os.access(walk.__file__, os.R_OK):
        raise WalkNotStarted(f"cannot start the walk: {walk.__file__} is not readable")
    child = await _spawned(
        sys.executable,
        "-I",  # the standard library only: no site, no environment, no package imports
        walk.__file__,
        str(directory),
    )
    assert child.stdout is not None and child.stderr is not None
    names: list[str] = []
    rest = b""
    try:
        while piece := await child.stdout.read(READ_BYTES):
            *whole, rest = (rest + piece).split(b"\0")
            names.extend(name.decode("utf-8", "surrogateescape") for name in whole)
        error = await child.stderr.read()
        status = await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await asyncio.shield(child.wait())
    if status != 0:
        reason = error.decode(errors="replace").strip().splitlines()
        raise OSError(reason[-1] if reason else f"listing {directory} failed ({status})")
    return names


# uvloop refuses to start a process while another event loop of the same process starts one
# (RuntimeError "Racing with another loop to spawn a process"): several servers in one
# process (the tests' ``running``) walking at once. The spawn takes milliseconds: tried again.
SPAWN_TRIES = 100


async def _spawned(*command: str) -> asyncio.subprocess.Process:
    for _ in range(SPAWN_TRIES - 1):
        try:
            return await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except RuntimeError as exc:
            if "Racing" not in str(exc):
                raise WalkNotStarted(f"cannot start the walk: {exc}") from exc
            await asyncio.sleep(0.01)
        except OSError as exc:
            raise WalkNotStarted(f"cannot start the walk ({command[0]}): {exc}") from exc
    raise WalkNotStarted(f"cannot start the walk: another loop was spawning {SPAWN_TRIES} times")
