"""One project's files, indexed the way legacy URLs are matched (spec rule 4)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pythonhosted.conveyor.filenames import normalize_filename


@dataclass(frozen=True, slots=True)
class LegacyFile:
    filename: str
    python_version: str
    url: str
    has_sig: bool


# Bytes one file costs in a ProjectFiles besides its strings (objects, tuples, dict slots),
# and how many times its filename is held (as given and in normal form); tracemalloc-measured.
FILE_OVERHEAD = 512
FILENAME_COPIES = 2


class ProjectFiles:
    """Files keyed by (python_version, filename), exactly and by normal form.

    Built once per fetch, so a cached project answers any legacy URL with two dict lookups.
    ``weight`` estimates its memory, for the cache's byte bound.
    """

    __slots__ = ("_exact", "_normal", "weight")

    def __init__(self, files: Iterable[LegacyFile]) -> None:
        self._exact: dict[tuple[str, str], LegacyFile] = {}
        self._normal: dict[tuple[str, str], LegacyFile] = {}
        self.weight = 0
        for item in files:
            self._exact.setdefault((item.python_version, item.filename), item)
            normal = normalize_filename(item.filename)
            if normal is not None:
                self._normal.setdefault((item.python_version, normal), item)
            self.weight += (
                FILE_OVERHEAD
                + FILENAME_COPIES * len(item.filename)
                + len(item.url)
                + len(item.python_version)
            )

    def __len__(self) -> int:
        return len(self._exact)

    def find(self, python_version: str, filename: str) -> LegacyFile | None:
        """The exact filename first, else the file with the same normal form."""
        found = self._exact.get((python_version, filename))
        if found is not None or not self._normal:
            return found  # (an unknown project's made-up filenames never reach the cache)
        normal = normalize_filename(filename)
        return None if normal is None else self._normal.get((python_version, normal))
