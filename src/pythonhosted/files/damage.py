"""A primary copy of a distribution checked against its catalog record before it is served.

A store can hold a copy shorter (or longer) than the file that was uploaded: a copy or a
replication that stopped half-way, a damaged disk, a hand-made repair. Its bytes went out as
the file, 200 with the store's length and a year of immutable caching, so every proxy on the
way kept a wheel that every installer refuses. The catalog record, written last by the upload
that checked the bytes, says how long the file is; a copy of another length is damaged, an
error of the primary like a failed read, so the archive's copy is served instead, and when it
has no good copy either the answer is a 503 (which nothing caches for a year) rather than the
damaged bytes.

Only a distribution's first lookup pays for the check (one small read of its record, after
the primary answered: misses and scans pay nothing more); the lookup is cached like any other.
A file without a record (stores filled by other means) or whose record names another object
is served as stored: nothing says what it should be.
"""

from __future__ import annotations

from pythonhosted.catalog import DamagedRecord, get_record
from pythonhosted.distributions import parse_filename
from pythonhosted.storage import StorageError, Store


async def recorded_size(catalog: Store, key: str) -> int | None:
    """The size the catalog record of the object at ``key`` gives, None when no record speaks
    for it (none, damaged, unreadable, or one for another object of the same name)."""
    filename = key.rsplit("/", 1)[-1]
    try:
        record = await get_record(catalog, parse_filename(filename).project, filename)
    except (StorageError, DamagedRecord, ValueError):  # ValueError: no distribution's name
        return None
    if record is None or record.path != "/" + key:
        return None
    return record.size
