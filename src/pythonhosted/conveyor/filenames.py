"""Normalised distribution filenames, so legacy URLs match however a name was spelled.

Two spellings of one file compare equal when their normal forms do (spec rule 4): wheels by
canonical name, canonical version, build tag and tag set; ``.tar.gz``/``.zip`` sdists by
canonical name and version. Anything else (eggs, installers, unparsable names) has no normal
form and only matches exactly.
"""

from __future__ import annotations

from functools import lru_cache

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)

SDIST_SUFFIXES = (".tar.gz", ".zip")
# No file system stores a longer name, so no distribution has one; a longer requested name has
# no normal form, is never parsed and never cached (a request line may be ~400 KB long).
MAX_FILENAME = 255


def normalize_filename(filename: str) -> str | None:
    """The normal form of a wheel or sdist filename, or None when it has none."""
    if len(filename) > MAX_FILENAME:
        return None
    return _normalize(filename)


# Cached: the same names are asked for over and over by legacy clients, and every file of a
# project is normalised each time its entry is refetched. Bounded in bytes too: at most
# 32,768 x (255 + 255 characters + ~200 bytes of bookkeeping), ~23 MB.
@lru_cache(maxsize=32_768)
def _normalize(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            name, version, build, tags = parse_wheel_filename(filename)
            build_part = f"-{build[0]}{build[1]}" if build else ""
            tag_part = ".".join(sorted(str(tag) for tag in tags))
            return (
                f"{canonicalize_name(name)}-{canonicalize_version(version)}"
                f"{build_part}-{tag_part}.whl"
            )
        for suffix in SDIST_SUFFIXES:
            if filename.endswith(suffix):
                name, version = parse_sdist_filename(filename)
                return f"{canonicalize_name(name)}-{canonicalize_version(version)}{suffix}"
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None
