"""What a distribution file is: its names, its hashed storage key, its core metadata.

Filenames are parsed with ``packaging`` (the same rules installers use). Only sdists and
wheels are accepted for upload, as PyPI itself has accepted since 2023. Sdist names may be
PEP 625's (``demo_pkg-1.0.tar.gz``) or the legacy ones older tools wrote (``Demo-Pkg-1.0.tar.gz``):
either way the name and version must be those the core metadata inside declares, compared as
installers compare them (canonical names, normalised versions).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from packaging.metadata import RawMetadata, parse_email
from packaging.utils import (
    InvalidName,
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from pythonhosted.archives import ArchiveRefused, tar_gz_member, zip_member
from pythonhosted.objectkeys import MAX_SEGMENT_BYTES

HASHED_PATH = re.compile(r"^/packages/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}/[^/]+$")
SDIST_SUFFIXES = (".tar.gz", ".zip")
METADATA_MAX_BYTES = 2**20  # core metadata is a few KB; the longest README on PyPI is < 1 MiB
# Core metadata 2.4 has 29 fields; room for older names, future ones and a few of a tool's own.
MAX_FIELD_NAMES = 128
# The longest name a file's objects get: its PEP 658 sidecar's metadata in a local store.
LONGEST_SUFFIX = ".metadata.json"
MAX_FILENAME_BYTES = MAX_SEGMENT_BYTES - len(LONGEST_SUFFIX)


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
    """Classify a distribution by its filename; InvalidDistribution for anything else.

    The project's name must be a PEP 508 name (packaging's parsers let a newline through),
    and the filename short enough that it and its sidecars fit a store key's segment: such a
    name used to get as far as the store, and its refusal was a traceback.
    """
    if "/" in filename or "\\" in filename:
        raise InvalidDistribution(f"{filename}: not a plain filename")
    if len(filename.encode("utf-8", "surrogateescape")) > MAX_FILENAME_BYTES:
        raise InvalidDistribution(
            f"{filename[:60]}...: longer than {MAX_FILENAME_BYTES} bytes (with "
            f"{LONGEST_SUFFIX!r} it must fit the {MAX_SEGMENT_BYTES} bytes of a store key's name)"
        )
    try:
        if filename.endswith(".whl"):
            name, version, _build, tags = parse_wheel_filename(filename)
            pythons = sorted({tag.interpreter for tag in tags})
            dist = Distribution(filename, name, str(version), "bdist_wheel", ".".join(pythons))
        elif filename.endswith(SDIST_SUFFIXES):
            name, version = parse_sdist_filename(filename)
            dist = Distribution(filename, name, str(version), "sdist", "source")
        else:
            raise InvalidDistribution(f"{filename}: not a wheel (.whl) or sdist (.tar.gz, .zip)")
        canonicalize_name(name, validate=True)
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise InvalidDistribution(f"{filename}: {exc}") from exc
    except InvalidName:
        raise InvalidDistribution(f"{filename!r}: {name!r} is not a project name") from None
    return dist


def storage_key(blake2b_256: str, filename: str) -> str:
    """Warehouse's content-addressed key: the file's BLAKE2b-256 hex split 2/2/60, then the
    filename."""
    return f"packages/{blake2b_256[:2]}/{blake2b_256[2:4]}/{blake2b_256[4:]}/{filename}"


def core_metadata(
    source: IO[bytes], dist: Distribution, max_bytes: int = METADATA_MAX_BYTES
) -> bytes:
    """The core metadata inside the distribution ``source`` (a seekable file, read in pieces):
    a wheel's ``.dist-info/METADATA``, an sdist's ``{name}-{version}/PKG-INFO``;
    InvalidDistribution (one line) if the archive is unreadable or hostile, or if the metadata
    names another project or version than the filename."""
    try:
        if dist.package_type == "bdist_wheel":
            found = zip_member(source, _metadata_chooser(dist), max_bytes)
            return _checked(found, dist, "METADATA")
        root = dist.filename.removesuffix(".zip").removesuffix(".tar.gz")
        pkg_info = f"{root}/PKG-INFO"
        if dist.filename.endswith(".zip"):
            found = zip_member(source, _exact(pkg_info), max_bytes, root)
        else:
            found = tar_gz_member(source, pkg_info, max_bytes, root)
        return _checked(found, dist, "PKG-INFO")
    except ArchiveRefused as exc:
        raise InvalidDistribution(f"{dist.filename}: {exc}") from None


def wheel_metadata(data: bytes, dist: Distribution) -> bytes:
    """The wheel's ``*.dist-info/METADATA`` (PEP 658 serves it beside the wheel)."""
    return core_metadata(io.BytesIO(data), dist)


def _metadata_chooser(dist: Distribution) -> Callable[[list[str]], str]:
    def choose(names: list[str]) -> str:
        wanted = [
            name
            for name in names
            if name.count("/") == 1
            and name.endswith(".dist-info/METADATA")
            and canonicalize_name(name.split("-", 1)[0]) == dist.normalized_project
        ]
        if len(wanted) != 1:
            raise ArchiveRefused("no unique .dist-info/METADATA")
        return wanted[0]

    return choose


def _exact(wanted: str) -> Callable[[list[str]], str]:
    def choose(names: list[str]) -> str:
        found = names.count(wanted)
        if found != 1:
            raise ArchiveRefused(f"no {wanted}" if not found else f"more than one {wanted}")
        return wanted

    return choose


def parse_core_metadata(metadata: bytes, what: str = "core metadata") -> RawMetadata:
    """``packaging``'s parse of core metadata, refused (ArchiveRefused) past
    :data:`MAX_FIELD_NAMES` distinct field names.

    The parse looks every name up by walking all the headers (``email.message.get_all``), so
    its cost is names x headers: 20,000 made-up fields (223 KB) took 16 s of CPU, the 1 MiB
    limit's 80,000 would take minutes. The names are counted first, in one pass.
    """
    head = metadata.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    names = {
        line.split(b":", 1)[0].strip().lower()
        for line in head.splitlines()
        if line[:1] not in (b" ", b"\t", b"") and b":" in line
    }
    if len(names) > MAX_FIELD_NAMES:
        raise ArchiveRefused(f"{what} has {len(names)} field names (at most {MAX_FIELD_NAMES})")
    return parse_email(metadata)[0]


def _checked(metadata: bytes, dist: Distribution, what: str) -> bytes:
    """``metadata`` if it names the filename's project and version (else ArchiveRefused)."""
    raw = parse_core_metadata(metadata, what)
    name, version = raw.get("name"), raw.get("version")
    if not name:
        raise ArchiveRefused(f"{what} has no Name")
    if not version:
        raise ArchiveRefused(f"{what} has no Version")
    if canonicalize_name(name) != dist.normalized_project:
        raise ArchiveRefused(f"{what} names project {name!r}, not {dist.project!r}")
    try:
        same = Version(version) == Version(dist.version)
    except InvalidVersion:
        raise ArchiveRefused(f"{what} has an invalid Version {version!r}") from None
    if not same:
        raise ArchiveRefused(f"{what} has version {version!r}, not {dist.version!r}")
    return metadata


def requires_python(metadata: bytes) -> str | None:
    """The ``Requires-Python`` field of core metadata, if any."""
    value = parse_core_metadata(metadata).get("requires_python")
    return value.strip() if value else None
