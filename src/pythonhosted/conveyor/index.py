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


class ProjectFiles:
    """Files keyed by (python_version, filename), exactly and by normal form.

    Built once per fetch, so a cached project answers any legacy URL with two dict lookups.
    """

    __slots__ = ("_exact", "_normal")

    def __init__(self, files: Iterable[LegacyFile]) -> None:
        self._exact: dict[tuple[str, str], LegacyFile] = {}
        self._normal: dict[tuple[str, str], LegacyFile] = {}
        for item in files:
            self._exact.setdefault((item.python_version, item.filename), item)
            normal = normalize_filename(item.filename)
            if normal is not None:
                self._normal.setdefault((item.python_version, normal), item)

    def __len__(self) -> int:
        return len(self._exact)

    def find(self, python_version: str, filename: str) -> LegacyFile | None:
        """The exact filename first, else the file with the same normal form."""
        found = self._exact.get((python_version, filename))
        if found is not None:
            return found
        normal = normalize_filename(filename)
        return None if normal is None else self._normal.get((python_version, normal))
