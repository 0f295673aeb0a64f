"""One small member read out of an untrusted archive, with bounded work and hostile layouts refused.

Uploads are checked by reading their core metadata (a wheel's ``METADATA``, an sdist's
``PKG-INFO``) out of the archive; anything an installer would refuse, or that could hurt one,
is refused first:

- member names that leave the archive's directory (absolute paths, ``..``, backslashes, NUL),
  or the sdist's ``{name}-{version}/`` root; tar members that PEP 721's ``data`` extraction
  filter refuses (links pointing outside, devices, pipes); symlinks in zips (installers have
  no meaning for them);
- compression methods other than stored and deflated in zips (as Warehouse);
- archives that unpack to more than :data:`UNPACK_RATIO` times their size (Warehouse's
  zip-bomb limit): a zip is judged by the sizes its directory declares, without inflating
  anything; a ``.tar.gz`` has no directory, so it is read through once (that is also how a
  truncated or corrupt stream is found) and reading stops at that budget;
- the member itself over ``max_bytes``: at most ``max_bytes + 1`` bytes are ever inflated;
- zips of more than :data:`ZIP_MAX_ENTRIES` entries, counted before the directory is parsed.

A ``.tar.gz`` of more than :data:`TAR_MAX_MEMBERS` members is refused as soon as the one past
that many has been read, before the unpack budget would end it.

Memory stays bounded whatever the archive, and whatever its size: the archive is a seekable
file (an upload's file on disk), read in pieces; the tar stream forgets each member after
looking at it (``tarfile`` would keep every header otherwise).
"""

from __future__ import annotations

import gzip
import io
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, cast

# Warehouse refuses zips that unpack to more than 50 times their size.
UNPACK_RATIO = 50
# Tar pads every member to 512 bytes and the whole to 10 KiB records, so a tiny, legitimate
# sdist can unpack to far more than 50 times its compressed size: small archives get this much.
UNPACK_FLOOR = 16 * 2**20
# Reading one tar header costs ~20-35 us of CPU, and empty members with random names pack to
# ~13 bytes each and unpack to 40x that, under the unpack budget: a 1 GiB upload
# (files.upload_max_bytes) of them is ~80 million members, 45 minutes of CPU on a loaded core.
# Far more members than any real sdist has; the same bound as for zips.
TAR_MAX_MEMBERS = 200_000
TAR_READ = 2**20
SCAN_READ = 2**20  # what counting a zip's directory entries reads at a time
ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
# ``zipfile`` parses the whole central directory into objects before anything can be checked:
# about 600 bytes and 50 us of CPU per entry (100,000 empty members, a 12 MB wheel: 59 MB
# traced, 5 s of CPU on a loaded machine), so a 1 GiB upload of empty members took gigabytes.
# Far more entries than any real wheel or sdist has; counted first (:func:`_zip_entry_bound`).
ZIP_MAX_ENTRIES = 200_000
CENTRAL_ENTRY = b"PK\x01\x02"  # what every central directory entry starts with


class ArchiveRefused(ValueError):
    """The archive is unreadable or hostile; the message says why, in a few words."""


def unpack_budget(packed_size: int) -> int:
    """How many bytes an archive of ``packed_size`` bytes may unpack to."""
    return max(UNPACK_RATIO * packed_size, UNPACK_FLOOR)


def _bad_name(name: str) -> bool:
    parts = name.split("/")
    return (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or ".." in parts
        or (len(name) > 1 and name[1] == ":")  # a Windows drive
    )


def zip_member(
    source: IO[bytes], choose: Callable[[list[str]], str], max_bytes: int, root: str | None = None
) -> bytes:
    """The member of the zip ``source`` that ``choose`` picks from its names, after checking
    all.

    ``root``: every member must lie under this directory (an sdist's ``{name}-{version}/``).
    """
    if _zip_entry_bound(source) > ZIP_MAX_ENTRIES:
        raise ArchiveRefused(f"more than {ZIP_MAX_ENTRIES:,} members")
    try:
        with zipfile.ZipFile(source) as archive:
            infos = archive.infolist()
            unpacked = 0
            for info in infos:
                _check_zip_entry(info, root)
                unpacked += info.file_size
            if unpacked > unpack_budget(_size_of(source)):
                raise ArchiveRefused(f"unpacks to more than {UNPACK_RATIO}x its size")
            name = choose([info.filename for info in infos])
            with archive.open(name) as member:
                return _bounded(member, name, max_bytes)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise ArchiveRefused(f"not a valid zip archive ({exc})") from None


def _zip_entry_bound(source: IO[bytes]) -> int:
    """At least the number of central directory entries in ``source``: their signature counted
    in the raw bytes (member data holding the bytes only over-counts), trusting nothing the
    archive says about itself and parsing nothing. Read a block at a time; a signature across
    two blocks is counted from the last bytes of one and the first of the next."""
    source.seek(0)
    count = 0
    overlap = len(CENTRAL_ENTRY) - 1
    tail = b""
    while block := source.read(SCAN_READ):
        count += (tail + block[:overlap]).count(CENTRAL_ENTRY) + block.count(CENTRAL_ENTRY)
        tail = block[-overlap:]
    source.seek(0)
    return count


def _size_of(source: IO[bytes]) -> int:
    size = source.seek(0, io.SEEK_END)
    source.seek(0)
    return size


def _check_zip_entry(info: zipfile.ZipInfo, root: str | None) -> None:
    name = info.filename
    if _bad_name(name):
        raise ArchiveRefused(f"member {name!r} escapes the archive")
    if root is not None and not _under(name.rstrip("/"), root):
        raise ArchiveRefused(f"member {name!r} is outside {root}/")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ArchiveRefused(f"member {name!r} is a symlink")
    if info.flag_bits & 0x1:
        raise ArchiveRefused(f"member {name!r} is encrypted")
    if info.compress_type not in ZIP_METHODS:
        raise ArchiveRefused(f"member {name!r} uses an unsupported compression method")


def tar_gz_member(source: IO[bytes], name: str, max_bytes: int, root: str) -> bytes:
    """The regular file ``name`` of the ``.tar.gz`` ``source``; every member must lie under
    ``root`` and pass the ``data`` extraction filter, and the stream must be whole."""
    found: bytes | None = None
    budget = unpack_budget(_size_of(source))
    stream = _Budgeted(gzip.GzipFile(fileobj=source), budget)
    try:
        # tarfile's stream mode only ever calls read(): the stub asks for a whole file object.
        source = cast("IO[bytes]", stream)
        with tarfile.open(fileobj=source, mode="r|", bufsize=TAR_READ) as archive:
            members = 0
            while (member := archive.next()) is not None:
                members += 1
                if members > TAR_MAX_MEMBERS:
                    raise ArchiveRefused(f"more than {TAR_MAX_MEMBERS:,} members")
                # TarFile keeps every header it has read (an attribute its stub leaves out);
                # stream mode never looks back, so memory stays flat however many members.
                archive.members.clear()  # type: ignore[attr-defined]
                _check_tar_member(member, root)
                if member.name.rstrip("/") != name:
                    continue
                if found is not None:
                    raise ArchiveRefused(f"more than one {name}")
                if not member.isfile():
                    raise ArchiveRefused(f"{name} is not a regular file")
                extracted = archive.extractfile(member)
                assert extracted is not None  # a regular file always has a body
                found = _bounded(extracted, name, max_bytes)
    except (tarfile.TarError, zlib.error, OSError, EOFError) as exc:
        raise ArchiveRefused(f"not a valid .tar.gz archive ({exc})") from None
    if found is None:
        raise ArchiveRefused(f"no {name}")
    return found


def _check_tar_member(member: tarfile.TarInfo, root: str) -> None:
    """PEP 721's ``data`` filter, on names alone: what it refuses, and links that leave ``root``.

    ``tarfile.data_filter`` resolves every name against a real directory (``realpath``, system
    calls per path component): half the cost of reading an archive of many small members,
    which is what a hostile one would be. No file is ever extracted here, so string checks on
    the normalised names are the whole question.
    """
    name = member.name.rstrip("/")
    if _bad_name(name):
        raise ArchiveRefused(f"member {member.name!r} escapes the archive")
    if not _under(name, root):
        raise ArchiveRefused(f"member {member.name!r} is outside {root}/")
    if member.ischr() or member.isblk() or member.isfifo():
        raise ArchiveRefused(f"member {member.name!r} is a device or pipe")
    if member.issym() or member.islnk():
        target = member.linkname
        if member.issym():  # relative to the link's directory; a hard link's to the archive
            target = posixpath.join(posixpath.dirname(name), target)
        if target.startswith("/") or not _under(posixpath.normpath(target), root):
            raise ArchiveRefused(f"member {member.name!r} links outside the archive")


def _under(name: str, root: str) -> bool:
    return name == root or name.startswith(root + "/")


def _bounded(member: IO[bytes], name: str, max_bytes: int) -> bytes:
    body = member.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ArchiveRefused(f"{name} is larger than {max_bytes} bytes")
    return body


class _Budgeted:
    """A readable stream that refuses to deliver more than ``budget`` bytes in all."""

    def __init__(self, stream: io.BufferedIOBase, budget: int) -> None:
        self.stream = stream
        self.left = budget

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = self.left + 1
        chunk = self.stream.read(min(size, self.left + 1))
        self.left -= len(chunk)
        if self.left < 0:
            raise ArchiveRefused(f"unpacks to more than {UNPACK_RATIO}x its size")
        return chunk
