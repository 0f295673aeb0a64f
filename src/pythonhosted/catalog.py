"""The record of every uploaded file, kept beside the files in the primary store.

One small JSON object per file under ``catalog/{normalized project}/{filename}.json``: written
create-only after the file itself, so a record always points at a stored file and concurrent
uploads never rewrite each other's records. The simple index (PEP 503/691) and conveyor's
own-index resolver read it; nothing reads the ``packages/`` tree to answer them.

Readers cache records for a while. Whoever changes the catalog (an upload, a yank, a delete)
then adds a create-only change marker naming the project, under :data:`CHANGES_PREFIX`, and
readers that follow the markers through a :class:`CatalogWatch` drop what they hold of that
project: they notice within a second, however long their cache TTL. Only the changed
project's pages go: on a busy index (PyPI takes an upload every few seconds) a change used to
empty every cache and make the root page list the whole catalog again, each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import logging
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from typing import Generic, TypeVar, get_type_hints

import orjson
from packaging.utils import InvalidName, canonicalize_name

from pythonhosted.coalesce import Coalescer
from pythonhosted.objectkeys import MAX_SEGMENT_BYTES
from pythonhosted.storage import NotFound, StorageError, Store
from pythonhosted.storage.errors import AlreadyExists
from pythonhosted.storage.stores import Listed

log = logging.getLogger(__name__)

PREFIX = "catalog/"
# Outside PREFIX, so nothing that lists the records ever mistakes them for one.
CHANGES_PREFIX = "catalog-changes/"
# One empty object per deleted file: a deleted filename is never taken again (PyPI: "This
# filename has already been used"), or a cache, a mirror or a lock file's hash would meet
# different bytes under the same name.
DELETED_PREFIX = "catalog-deleted/"
# How long change markers are kept: a watcher that looked longer ago than this (it always
# looks within seconds while it runs) cannot know what changed and forgets everything.
CHANGES_KEPT = 600.0
# Writers' clocks may disagree by this much: a watcher reads markers back this far before the
# newest it saw, so a marker stamped late by a slow clock is still found.
CLOCK_SKEW = 30.0
READ_CONCURRENCY = 32  # record reads in flight per listing (a project may have thousands)


class DamagedRecord(ValueError):
    """A catalog record that is not one: cut mid-write (a full disk, a crash of a store
    without atomic writes), or overwritten by hand. Readers of a listing leave it out and
    log its key; one whole page of the index answered 500 for as long as it stayed."""


@dataclass(frozen=True, slots=True)
class FileRecord:
    filename: str
    path: str  # the files edge's URL path, /packages/xx/yy/…/filename
    project: str
    version: str
    package_type: str
    python_version: str
    size: int
    sha256: str
    blake2b_256: str
    upload_time: str  # ISO 8601 UTC, as PEP 700 reports it
    requires_python: str | None = None
    metadata_sha256: str | None = None  # of the PEP 658 sidecar, for wheels
    yanked: bool = False  # PEP 592: installers skip it unless pinned with ==
    yanked_reason: str | None = None
    # For distribution_metadata (records written before these were kept have None: the
    # metadata backfill reads the file for its MD5).
    md5: str | None = None
    uploaded_via: str | None = None  # the uploading tool, e.g. "pythonhosted/0.1.0"

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes, shared: dict[str, str] | None = None) -> FileRecord:
        """A record as stored; fields a newer writer added are left out, not an error.

        With ``shared``, the values of fields many records repeat are taken from it (and
        added to it): a reader of 100,000 records holds one copy of each, not 100,000.
        """
        try:
            stored = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DamagedRecord(f"not JSON ({exc})") from None
        if not isinstance(stored, dict):
            raise DamagedRecord("not a JSON object")
        for name, kind in _TYPES.items():
            if name in stored and not isinstance(stored[name], kind):
                raise DamagedRecord(f"{name} is not {getattr(kind, '__name__', kind)}")
        if shared is not None:
            for name in _REPEATED:
                value = stored.get(name)
                if isinstance(value, str):
                    stored[name] = shared.setdefault(value, value)
        try:
            return cls(**{name: stored[name] for name in _FIELDS if name in stored})
        except TypeError as exc:  # a field every record has is missing
            raise DamagedRecord(str(exc).removeprefix("FileRecord.__init__() ")) from None


_FIELDS = tuple(field.name for field in fields(FileRecord))
_TYPES = get_type_hints(FileRecord)
_REPEATED = ("project", "package_type", "python_version", "requires_python", "uploaded_via")


def is_project_name(name: str) -> bool:
    """Whether ``name`` can name a project: PEP 508's rule (ASCII letters, digits, ``.``,
    ``-``, ``_``) and short enough to be a key's segment.

    A name from a request that fails it names no project and is never looked up: a newline or
    a 300-character name used to reach the store, whose refusal the index and conveyor
    answered with 503 (and the index then put the CR LF of ``/simple/A%0d%0a…/`` into a
    redirect's Location header: a 500).
    """
    try:
        canonicalize_name(name, validate=True)
    except InvalidName:
        return False
    return len(name) <= MAX_SEGMENT_BYTES


def record_key(project: str, filename: str) -> str:
    return f"{PREFIX}{canonicalize_name(project)}/{filename}.json"


async def get_record(store: Store, project: str, filename: str) -> FileRecord | None:
    """The file's record; None when it has none, DamagedRecord (naming it) for a damaged one."""
    key = record_key(project, filename)
    try:
        return FileRecord.from_json(await store.get_bytes(key))
    except NotFound:
        return None
    except DamagedRecord as exc:
        raise DamagedRecord(f"catalog record {key} in {store.url} is damaged: {exc}") from None


def deleted_key(project: str, filename: str) -> str:
    return f"{DELETED_PREFIX}{canonicalize_name(project)}/{filename}"


async def was_deleted(store: Store, project: str, filename: str) -> bool:
    try:
        await store.info(deleted_key(project, filename))
    except NotFound:
        return False
    return True


async def put_record(store: Store, record: FileRecord) -> None:
    """Rewrite an existing record (a yank or an unyank changes it in place)."""
    await store.put(record_key(record.project, record.filename), record.to_json())


async def project_records(store: Store, project: str) -> list[FileRecord]:
    """Every file of one project, sorted by filename.

    A record deleted between the listing and its read is left out, not an error; a name that
    cannot be a project's has none.
    """
    if not is_project_name(project):
        return []
    return await _read_all(store, await store.list(f"{PREFIX}{canonicalize_name(project)}/"))


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProjectRead(Generic[T]):
    """What a reader kept of one project's records, with what the listing said of each, so
    the next read of the project reads only the records that changed since.

    ``kept`` maps each filename, in the listing's order, to (the listing's tag for its record,
    what the reader kept of it: the record, or less); ``listed_at`` is when the listing began.
    """

    kept: dict[str, tuple[str, T]]
    listed_at: float

    @property
    def values(self) -> list[T]:
        return [value for _, value in self.kept.values()]


async def read_project(
    store: Store,
    project: str,
    keep: Callable[[FileRecord], T],
    previous: ProjectRead[T] | None = None,
) -> ProjectRead[T]:
    """One project's records (``keep`` of each, in filename order), reading only those that
    changed since ``previous``: one listing, and a read per new or rewritten record.

    A nightly build's project has 10,000-100,000 files and takes an upload every few minutes;
    every reader used to read all of its records again after each one (50,000 reads, 16 s of
    CPU, per upload). A record counts as unchanged when the listing gives it the same tag
    (the store's ETag, which a rewrite changes); a store that gives no ETag has size and time
    compared, and a record it lists as modified up to :data:`CLOCK_SKEW` before the previous
    listing is read again (a rewrite of the same size in the same second looks the same).
    """
    if not is_project_name(project):
        return ProjectRead({}, time.time())
    prefix = f"{PREFIX}{canonicalize_name(project)}/"
    listed_at = time.time()
    listed = await store.list(prefix)
    before = previous.kept if previous is not None else {}
    recent = (previous.listed_at if previous is not None else 0.0) - CLOCK_SKEW
    tags: dict[str, str] = {}
    wanted: list[str] = []
    for item in listed:
        filename = item.key[len(prefix) : -len(".json")] if item.key.endswith(".json") else ""
        if not filename:
            continue  # not a record's key
        tags[filename] = tag = item.etag or f"{item.size}@{item.last_modified.isoformat()}"
        known = before.get(filename)
        if (
            known is None
            or known[0] != tag
            or (item.etag is None and item.last_modified.timestamp() >= recent)
        ):
            wanted.append(filename)
    if previous is not None and not wanted and len(tags) == len(before):
        return ProjectRead(before, listed_at)  # the same records: the same dict, kept
    found = await _read_each(store, [prefix + filename + ".json" for filename in wanted])
    fresh = dict(zip(wanted, found, strict=True))
    kept: dict[str, tuple[str, T]] = {}
    for filename, tag in tags.items():
        if filename in fresh:
            record = fresh[filename]
            if record is not None:  # (None: deleted between the listing and the read)
                # (the record's own string when it is the same: one copy of the name)
                name = record.filename if record.filename == filename else filename
                kept[name] = (tag, keep(record))
        else:
            kept[filename] = before[filename]
    return ProjectRead(kept, listed_at)


async def record_filenames(store: Store, project: str) -> list[str]:
    """The filenames of a project's records, sorted, from one listing: no record is read."""
    if not is_project_name(project):
        return []
    prefix = f"{PREFIX}{canonicalize_name(project)}/"
    listed = await store.list(prefix)
    return [item.key[len(prefix) : -len(".json")] for item in listed if item.key.endswith(".json")]


async def records_of(store: Store, project: str, filenames: list[str]) -> list[FileRecord]:
    """The records of these files of one project (bounded concurrent reads); a file with no
    record is left out."""
    found = await _read_each(store, [record_key(project, filename) for filename in filenames])
    return [record for record in found if record is not None]


async def _read_all(store: Store, listed: list[Listed]) -> list[FileRecord]:
    found = await _read_each(store, [item.key for item in listed])
    return [record for record in found if record is not None]


async def _read_each(store: Store, keys: list[str]) -> list[FileRecord | None]:
    """Each record, None for one deleted since it was listed or damaged (logged); strings
    most records repeat (the project, the tags, Requires-Python) are shared, not held once
    per record."""
    limit = asyncio.Semaphore(READ_CONCURRENCY)
    shared: dict[str, str] = {}

    async def read(key: str) -> FileRecord | None:
        async with limit:
            try:
                return FileRecord.from_json(await store.get_bytes(key), shared)
            except NotFound:
                return None
            except DamagedRecord as exc:
                log.error("catalog record %s in %s is damaged, left out: %s", key, store.url, exc)
                return None

    return list(await asyncio.gather(*(read(key) for key in keys)))


async def projects(store: Store) -> list[str]:
    """Normalized names of every project with at least one file: one delimiter listing, one
    entry per project, not one per file (PyPI's catalog has millions of files)."""
    return await store.list_names(PREFIX, large=True)


# The names index: snapshots of the list of projects, so that a new process (a restart, a new
# worker) has the root page's list without walking the catalog (a million project directories:
# 40-70 s, 10-14 s of CPU). ``{position:020d}-{random}``: the newest sorts last; create-only
# puts, so several writers never overwrite one another, on S3 as on a directory.
NAMES_PREFIX = "catalog-names/"
NAMES_KEPT = 2  # snapshots left after a new one is written (a reader may be reading the last)
# A snapshot is used while the markers since its position are still kept (a writer's clock
# may be ahead of the pruner's, and behind the reader's): older, the walk it saves is needed.
NAMES_USABLE = CHANGES_KEPT - 3 * CLOCK_SKEW
# Listings a reader makes when the snapshot it chose is removed before it reads it (newer
# writers came meanwhile: the next listing shows theirs).
NAMES_READ_TRIES = 3
_NAMES_HEADER = b"pythonhosted catalog names "
# What a snapshot may hold: a million names are ~2.5 MB gzipped and ~6 times that unpacked.
# Read whole and unpacked whole, a gzip bomb in its place (256 MB of zeros is 250 KB gzipped)
# took gigabytes in every index process that started; one past these is damaged, not used.
NAMES_MAX_STORED = 256 << 20
NAMES_MAX_RATIO = 100  # unpacked bytes per stored byte, past a floor of NAMES_MIN_UNPACKED
NAMES_MIN_UNPACKED = 16 << 20
_NAMES_KEY = re.compile(r"(\d{20})-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class NamesSnapshot:
    """Every project with files as of ``position_ns`` (time.time_ns()): changes made since
    have markers stamped from ``position_ns - CLOCK_SKEW`` on (:func:`changed_since`).

    ``walked_ns``: when the walk of the catalog this list comes from began: a list kept up to
    date by markers, snapshot after snapshot, is walked again now and then, whichever process
    holds it, to catch a change whose marker was never written (the index's
    ``NAMES_SECONDS_PER_NAME``).
    """

    position_ns: int
    names: list[str]
    walked_ns: int


class DamagedNames(ValueError):
    """A names snapshot that does not read back as the sorted list it was written as."""


async def write_names(store: Store, snapshot: NamesSnapshot) -> None:
    """Put ``snapshot`` (gzipped: a million names are ~2.5 MB) and remove all but the newest
    :data:`NAMES_KEPT`; the encoding runs in a thread (zlib lets the loop run beside it)."""
    data = await asyncio.to_thread(_encode_names, snapshot)
    key = f"{NAMES_PREFIX}{snapshot.position_ns:020d}-{uuid.uuid4().hex[:12]}"
    with contextlib.suppress(AlreadyExists):  # a unique key: our own put, retried after a 5xx
        await store.put(key, data, create_only=True)
    older = [item.key for item in await store.list(NAMES_PREFIX) if item.key < key]
    await store.delete_many(older[: max(0, len(older) - NAMES_KEPT + 1)])


async def newest_names_position(store: Store) -> int:
    """The position of the newest snapshot in ``store`` (one listing); 0 when there is none."""
    listed = await store.list(NAMES_PREFIX)
    positions = (_NAMES_KEY.fullmatch(item.key[len(NAMES_PREFIX) :]) for item in listed)
    return max((int(found[1]) for found in positions if found), default=0)


async def read_names(store: Store) -> NamesSnapshot | None:
    """The newest usable snapshot; None when there is none (none written, all older than
    :data:`NAMES_USABLE`, or damaged: logged).

    One removed between the listing and its read (writers keep only the newest
    :data:`NAMES_KEPT`: with several index processes, two may write while a million names are
    read) means newer ones exist: the catalog is listed again for them, not walked."""
    for _ in range(NAMES_READ_TRIES):
        try:
            return await _read_newest(store)
        except NotFound:
            continue
    return None


async def _read_newest(store: Store) -> NamesSnapshot | None:
    """As :func:`read_names`; NotFound when the newest usable one was removed since listed."""
    oldest = time.time_ns() - int(NAMES_USABLE * 1e9)
    for item in reversed(await store.list(NAMES_PREFIX)):
        found = _NAMES_KEY.fullmatch(item.key[len(NAMES_PREFIX) :])
        if found is None:
            continue  # someone else's object
        position = int(found[1])
        if position < oldest:
            return None
        try:
            if item.size > NAMES_MAX_STORED:
                raise DamagedNames(f"{item.size} bytes stored, more than {NAMES_MAX_STORED}")
            walked, names = await asyncio.to_thread(_decode_names, await store.get_bytes(item.key))
        except DamagedNames as exc:
            log.error("names snapshot %s in %s is damaged, not used: %s", item.key, store.url, exc)
            continue
        return NamesSnapshot(position, names, walked or position)
    return None


def _encode_names(snapshot: NamesSnapshot) -> bytes:
    """Version 2: the header also says when the list was walked (version 1's did not)."""
    body = "\n".join(snapshot.names).encode()
    header = _NAMES_HEADER + b"2 %d %d\n" % (len(snapshot.names), snapshot.walked_ns)
    return gzip.compress(header + body, compresslevel=1, mtime=0)


def _decode_names(data: bytes) -> tuple[int, list[str]]:
    """(when walked: 0 if unsaid, the names), checked: whole (gzip's CRC and the count),
    sorted, each once, and unpacked within :data:`NAMES_MAX_RATIO` of its stored size.

    A version after 2 is read as 2 when its header starts with version 2's fields: later
    versions may only add fields after them (a body read differently needs another header
    prefix). In a rolling upgrade, processes on the older code then keep using the newer
    processes' snapshots instead of walking the catalog (40-70 s at a million projects)."""
    bound = max(NAMES_MIN_UNPACKED, NAMES_MAX_RATIO * len(data))
    unpacker = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip, one member as written
    try:
        text = unpacker.decompress(data, bound + 1)
    except zlib.error as exc:
        raise DamagedNames(f"not gzip ({exc})") from None
    if len(text) > bound:
        raise DamagedNames(f"unpacks to more than {bound} bytes (a bomb?)")
    if not unpacker.eof:
        raise DamagedNames("not gzip (truncated)")
    header, _, body = text.partition(b"\n")
    fields = header.removeprefix(_NAMES_HEADER).split(b" ")
    read = fields[:3]  # a later version's own fields after these are not this version's
    if header == fields[0] or not all(field.isdigit() and len(field) <= 20 for field in read):
        raise DamagedNames("no header")
    if fields[0] == b"1" and len(fields) == 2:
        count, walked = int(fields[1]), 0
    elif int(fields[0]) >= 2 and len(fields) >= 3:
        count, walked = int(fields[1]), int(fields[2])
    else:
        raise DamagedNames(f"unknown header {header[:80]!r}")
    names = body.decode(errors="replace").split("\n") if body else []
    if len(names) != count:
        raise DamagedNames(f"{len(names)} names, not {count}")
    if any(later <= earlier for earlier, later in itertools.pairwise(names)):
        raise DamagedNames("not sorted")
    return walked, names


async def changed_since(store: Store, position_ns: int) -> set[str]:
    """The projects changed since ``position_ns`` (their markers from ``CLOCK_SKEW`` before
    it), whatever a :class:`CatalogWatch` has seen."""
    since = f"{CHANGES_PREFIX}{max(0, position_ns - int(CLOCK_SKEW * 1e9)):020d}"
    markers = (_marker(item.key) for item in await store.list(CHANGES_PREFIX, after=since))
    return {found[1] for found in markers if found}


async def has_files(store: Store, project: str) -> bool:
    if not is_project_name(project):
        return False
    return await store.has_any(f"{PREFIX}{canonicalize_name(project)}/")


async def mark_changed(store: Store, projects: Iterable[str]) -> None:
    """Tell every :class:`CatalogWatch` on this store that these projects' records changed.

    One create-only marker per project, its name in the key (a listing says it all). Markers
    older than :data:`CHANGES_KEPT` are removed on the way, at most once per
    :data:`PRUNE_EVERY` seconds in a process: a bulk upload of 100,000 files makes as many
    markers, and listing them all at each upload would make it quadratic.
    """
    now = time.time_ns()
    for project in sorted({canonicalize_name(name) for name in projects}):
        key = f"{CHANGES_PREFIX}{now:020d}-{uuid.uuid4().hex[:12]}-{project}"
        with contextlib.suppress(AlreadyExists):  # a unique key: our own put, retried
            await store.put(key, b"", create_only=True)
    if time.monotonic() < _next_prune.get(store.url, 0.0):
        return
    _next_prune[store.url] = time.monotonic() + PRUNE_EVERY
    expired = f"{CHANGES_PREFIX}{now - int(CHANGES_KEPT * 1e9):020d}"
    for item in await store.list(CHANGES_PREFIX):
        if item.key >= expired:
            break
        await store.delete(item.key)


PRUNE_EVERY = 60.0
_next_prune: dict[str, float] = {}  # store URL -> when this process prunes its markers next


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since a watcher's last look: some projects, or everything it may hold."""

    projects: frozenset[str] = frozenset()
    everything: bool = False
    # When the look that found them began (time.time_ns(); 0: no look, nothing new): every
    # marker put before then was seen by that look or an earlier one.
    looked_ns: int = 0


class CatalogWatch:
    """Which projects changed since the last look; the store is asked at most once per
    ``interval`` seconds, by one listing however many requests ask meanwhile.

    The first look only learns where the markers stand (there is nothing cached before it). A
    store that fails to answer counts as unchanged: caches keep serving, and expire on their
    own TTL as before.
    """

    def __init__(self, store: Store, interval: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self._seen: set[str] | None = None  # markers of the last CLOCK_SKEW before the newest
        self._newest_ns = 0
        self._looked_at = 0.0
        self._next = 0.0
        self._looking: Coalescer[None, Changes] = Coalescer()

    async def changes(self) -> Changes:
        if time.monotonic() < self._next:
            return Changes()
        return await self._looking.run(None, self._look)

    @property
    def started(self) -> bool:
        """Whether a look succeeded: every marker put since is reported by a later look."""
        return self._seen is not None

    async def _look(self) -> Changes:
        skew = int(CLOCK_SKEW * 1e9)
        since = f"{CHANGES_PREFIX}{max(0, self._newest_ns - skew):020d}"
        looked_ns = time.time_ns()
        try:
            listed = await self.store.list(CHANGES_PREFIX, after=since)
        except StorageError as exc:
            log.warning("catalog changes unreadable: %s", exc)
            self._next = time.monotonic() + self.interval
            return Changes()
        now = time.monotonic()
        behind = self._seen is not None and now - self._looked_at > CHANGES_KEPT - CLOCK_SKEW
        markers = {item.key: found for item in listed if (found := _marker(item.key))}
        new = [key for key in markers if self._seen is None or key not in self._seen]
        first = self._seen is None
        self._newest_ns = max([self._newest_ns, *(markers[key][0] for key in new)])
        keep_from = self._newest_ns - skew
        self._seen = {key for key, (stamp, _) in markers.items() if stamp >= keep_from}
        self._looked_at = now
        self._next = now + self.interval
        if first:
            return Changes(looked_ns=looked_ns)
        if behind:
            return Changes(everything=True, looked_ns=looked_ns)
        return Changes(projects=frozenset(markers[key][1] for key in new), looked_ns=looked_ns)


_MARKER = re.compile(r"(\d{20})-[0-9a-f]{12}-(.+)")


def _marker(key: str) -> tuple[int, str] | None:
    """(time stamp, project) of a change marker's key; None for anything else under the
    prefix (an object someone else put there must not stop every reader)."""
    found = _MARKER.fullmatch(key[len(CHANGES_PREFIX) :])
    return (int(found[1]), found[2]) if found else None


class ReadEpochs:
    """Whether a read of a project's records is still current when it ends.

    A reader that caches what it read must not keep (nor let later requests join) a read that
    began before the project changed. Each project has an epoch, moved on only by changes to
    it, so on a busy index reads of the other projects are kept all the same. The table holds
    an entry per project changed while the reader ran; past ``MAX_TRACKED`` it starts over with
    a new generation (which outdates every read under way: rare, and only costs re-reads).
    """

    MAX_TRACKED = 100_000

    def __init__(self) -> None:
        self._generation = 0
        self._epochs: dict[str, int] = {}

    def of(self, project: str) -> tuple[int, int]:
        return self._generation, self._epochs.get(project, 0)

    def advance(self, changes: Changes) -> None:
        if changes.everything or len(self._epochs) + len(changes.projects) > self.MAX_TRACKED:
            self._generation += 1
            self._epochs.clear()
        if not changes.everything:
            for project in changes.projects:
                self._epochs[project] = self._epochs.get(project, 0) + 1
