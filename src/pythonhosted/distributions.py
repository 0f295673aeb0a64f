"""What a distribution file is: its names, its hashed storage key, its core metadata.

Filenames are parsed with ``packaging`` (the same rules installers use). Only sdists and
wheels are accepted for upload, as PyPI itself has accepted since 2023.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from io import BytesIO

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

HASHED_PATH = re.compile(r"^/packages/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}/[^/]+$")
SDIST_SUFFIXES = (".tar.gz", ".zip")


class InvalidDistribution(ValueError):
    """A file that cannot be uploaded (bad name, unsupported type, broken wheel)."""


@dataclass(frozen=True, slots=True)
class Distribution:
    filename: str
    project: str
    version: str
    package_type: str  # "sdist" or "bdist_wheel", as Warehouse names them
    python_version: str  # wheel python tag(s), "source" for sdists

    @property
    def normalized_project(self) -> str:
        return canonicalize_name(self.project)

    def metadata(self) -> dict[str, str]:
        """The object metadata the files edge exposes as ``x-pypi-file-*`` headers."""
        return {
            "project": self.project,
            "version": self.version,
            "package-type": self.package_type,
            "python-version": self.python_version,
        }


def parse_filename(filename: str) -> Distribution:
    """Classify a distribution by its filename; InvalidDistribution for anything else."""
    if "/" in filename or "\\" in filename:
        raise InvalidDistribution(f"{filename}: not a plain filename")
    try:
        if filename.endswith(".whl"):
            name, version, _build, tags = parse_wheel_filename(filename)
            pythons = sorted({tag.interpreter for tag in tags})
            return Distribution(filename, name, str(version), "bdist_wheel", ".".join(pythons))
        if filename.endswith(SDIST_SUFFIXES):
            name, version = parse_sdist_filename(filename)
            return Distribution(filename, name, str(version), "sdist", "source")
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise InvalidDistribution(f"{filename}: {exc}") from exc
    raise InvalidDistribution(f"{filename}: not a wheel (.whl) or sdist (.tar.gz, .zip)")


def storage_key(data: bytes, filename: str) -> str:
    """Warehouse's content-addressed key: BLAKE2b-256 hex split 2/2/60, then the filename."""
    digest = hashlib.blake2b(data, digest_size=32).hexdigest()
    return f"packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"


def wheel_metadata(data: bytes, dist: Distribution) -> bytes:
    """The wheel's ``*.dist-info/METADATA`` (PEP 658 serves it beside the wheel)."""
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            candidates = [
                name
                for name in archive.namelist()
                if name.count("/") == 1 and name.endswith(".dist-info/METADATA")
            ]
            wanted = [
                name
                for name in candidates
                if canonicalize_name(name.split("-", 1)[0]) == dist.normalized_project
            ]
            if len(wanted) != 1:
                raise InvalidDistribution(f"{dist.filename}: no unique .dist-info/METADATA")
            return archive.read(wanted[0])
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidDistribution(f"{dist.filename}: not a valid zip archive ({exc})") from exc


def requires_python(metadata: bytes) -> str | None:
    """The ``Requires-Python`` field of core metadata, if any."""
    headers = HeaderParser().parsestr(metadata.decode("utf-8", errors="replace"))
    value = headers.get("Requires-Python")
    return str(value).strip() if value else None
