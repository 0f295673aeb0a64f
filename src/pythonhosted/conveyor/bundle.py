"""The files of a docs upload, a directory or a ``.zip``, checked whole before anything is written.

A docs bundle comes from a project's build, so it is treated as hostile. :func:`open_bundle`
refuses, with one line naming the file and nothing written yet:

- names that are not safe keys (absolute, ``..``, ``.``, ``//``, backslash, NUL, control
  characters, not UTF-8, too long for a store), names given twice, a name that is both a file
  and a directory;
- anything that is not a plain file: symlinks (one would publish whatever it points at, such
  as ``/etc/passwd``), devices, FIFOs and sockets, directories that are links; in a zip,
  members whose Unix mode says link or special file, encrypted members, and compression other
  than deflate (Python inflates bzip2 and LZMA members without an output bound, and bzip2
  packs 200 MB of zeros into 177 bytes);
- more than ``limits.files`` files; in a zip this is counted on the raw archive before its
  directory is parsed (parsing costs ~550 bytes of memory per entry);
- a file over ``limits.file_bytes``, over ``limits.total_bytes`` in all, or a zip member that
  inflates to more than ``limits.ratio`` times its compressed size (past :data:`RATIO_FLOOR`).
  For a zip these sizes are *counted while inflating* every member once, never taken from its
  headers; for a directory they are what ``lstat`` says.

Reading then goes piece by piece (:data:`PIECE`), and each file must give exactly the bytes
checked: one that changed since (grew, shrank, became a link) is an error, not a surprise.
Directory files are opened component by component with ``O_NOFOLLOW``, so a directory swapped
for a symlink after the check cannot redirect a read either.
"""

from __future__ import annotations

import contextlib
import os
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from pythonhosted.config import ConveyorSettings
from pythonhosted.objectkeys import MAX_KEY_BYTES, MAX_SEGMENT_BYTES
from pythonhosted.storage.stores import check_key

PIECE = 1024 * 1024
RATIO_FLOOR = 1024 * 1024  # below this a member cannot amplify anything worth refusing
SIGNATURE = b"PK\x01\x02"  # starts every entry of a zip's central directory
# A zip's directory entries count as entries, not files: room for one directory per file.
ENTRIES_PER_FILE = 2
_FILE_ATTRIBUTE_UNIX = 16  # external_attr keeps the Unix mode in its high 16 bits
_ENCRYPTED = 0x1
_INFLATABLE = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError)


class BundleError(ValueError):
    """A refused source, in one line (the caller adds nothing)."""


@dataclass(frozen=True, slots=True)
class UploadLimits:
    file_bytes: int
    total_bytes: int
    files: int
    ratio: float

    @classmethod
    def from_settings(cls, settings: ConveyorSettings) -> UploadLimits:
        return cls(
            settings.upload_max_file_bytes,
            settings.upload_max_total_bytes,
            settings.upload_max_files,
            settings.upload_max_ratio,
        )


@dataclass(frozen=True, slots=True)
class Member:
    """One file to publish: its relative name and the exact size a read must give."""

    name: str
    size: int


class Bundle(Protocol):
    source: Path
    members: list[Member]

    def open_member(self, member: Member) -> IO[bytes]: ...

    def close(self) -> None: ...


def open_bundle(source: Path, folder: str, limits: UploadLimits) -> DirectoryBundle | ZipBundle:
    """Check ``source`` (see the module docstring); BundleError for anything refused.

    Names are checked as keys below ``folder``, the store folder the files will be written to
    (a name that fits below the project but not below its site folder is refused here).

    Blocking (it may inflate a whole archive): run it in a thread.
    """
    if source.is_dir():
        return DirectoryBundle(source, folder, limits)
    if not source.is_file():
        raise BundleError(f"{source}: no such directory or zip file")
    return ZipBundle(source, folder, limits)


def pieces(bundle: Bundle, member: Member) -> Generator[bytes, None, None]:
    """``member``'s bytes in pieces of at most :data:`PIECE`; BundleError if it changed."""
    read = 0
    try:
        with bundle.open_member(member) as stream:
            while piece := stream.read(PIECE):
                read += len(piece)
                if read > member.size:
                    break
                yield piece
    except BundleError:
        raise
    except _CORRUPT as exc:
        raise BundleError(f"{bundle.source}: {member.name!r} is unreadable ({exc})") from None
    if read != member.size:
        raise BundleError(f"{bundle.source}: {member.name!r} changed while uploading")


def read_whole(bundle: Bundle, member: Member) -> bytes:
    """A small member's bytes (the caller keeps this for members up to a few pieces)."""
    return b"".join(pieces(bundle, member))


class _Checker:
    """The checks both kinds of source share: names, counts and sizes."""

    def __init__(self, source: Path, folder: str, limits: UploadLimits) -> None:
        self.source = source
        self.folder = folder
        self.limits = limits
        self.members: list[Member] = []
        self.total = 0

    def refuse(self, why: str) -> BundleError:
        return BundleError(f"{self.source}: {why}")

    def name(self, name: str) -> str:
        """``name`` if it is a safe relative file name, else BundleError."""
        parts = name.split("/")
        try:
            encoded = f"{self.folder}/{name}".encode()
            longest = max(len(part.encode()) for part in parts)
        except UnicodeEncodeError:
            raise self.refuse(f"refusing unsafe file name {name!r}") from None
        if len(encoded) > MAX_KEY_BYTES or longest > MAX_SEGMENT_BYTES:  # before the key rule,
            raise self.refuse(f"refusing file name {name[:60]!r}...: too long")  # to say why
        try:
            check_key(f"{self.folder}/{name}")
        except ValueError:
            raise self.refuse(f"refusing unsafe file name {name!r}") from None
        if "" in parts or any(unicodedata.category(char) == "Cc" for char in name):
            raise self.refuse(f"refusing unsafe file name {name!r}")
        return name

    def count(self) -> None:
        if len(self.members) > self.limits.files:
            raise self.refuse(f"more than {self.limits.files} files (upload_max_files)")

    def size(self, name: str, size: int, total: int) -> None:
        if size > self.limits.file_bytes:
            raise self.refuse(
                f"{name!r} is over {self.limits.file_bytes} bytes (upload_max_file_bytes)"
            )
        if total > self.limits.total_bytes:
            raise self.refuse(
                f"over {self.limits.total_bytes} bytes in all (upload_max_total_bytes)"
            )

    def add(self, name: str, size: int) -> None:
        self.members.append(Member(name, size))
        self.count()
        self.total += size
        self.size(name, size, self.total)


class DirectoryBundle:
    """A directory: regular files and plain subdirectories only, read without following links."""

    def __init__(self, source: Path, folder: str, limits: UploadLimits) -> None:
        self.source = source
        checker = _Checker(source, folder, limits)
        pending = [""]
        while pending:
            prefix = pending.pop()
            with os.scandir(source / prefix if prefix else source) as entries:
                for entry in entries:
                    name = checker.name(prefix + entry.name)
                    status = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(status.st_mode):
                        pending.append(name + "/")
                    elif stat.S_ISREG(status.st_mode):
                        checker.add(name, status.st_size)
                    elif stat.S_ISLNK(status.st_mode):
                        raise checker.refuse(f"refusing symlink {name!r}")
                    else:
                        raise checker.refuse(f"refusing {name!r}: not a regular file")
        self.members = checker.members
        self._root = os.open(source, os.O_RDONLY | os.O_DIRECTORY)

    def open_member(self, member: Member) -> IO[bytes]:
        """Open ``member`` one component at a time, refusing a link at any step."""
        *folders, last = member.name.split("/")
        directory = self._root
        try:
            with contextlib.ExitStack() as opened:
                for folder in folders:
                    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                    directory = os.open(folder, flags, dir_fd=directory)
                    opened.callback(os.close, directory)
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # never wait on a FIFO
                descriptor = os.open(last, flags, dir_fd=directory)
        except OSError as exc:
            raise BundleError(
                f"{self.source}: {member.name!r} changed while uploading ({exc.strerror})"
            ) from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise BundleError(f"{self.source}: {member.name!r} changed while uploading")
        return os.fdopen(descriptor, "rb", buffering=0)

    def close(self) -> None:
        os.close(self._root)


class ZipBundle:
    """A zip archive, checked entry by entry and then inflated once to count its real sizes."""

    def __init__(self, source: Path, folder: str, limits: UploadLimits) -> None:
        self.source = source
        checker = _Checker(source, folder, limits)
        size = source.stat().st_size
        if size > _largest_zip(limits):  # before a read of all of it (10 GB: a minute)
            raise checker.refuse(
                f"{size} bytes, more than a zip of {limits.total_bytes} bytes in all can be "
                "(upload_max_total_bytes)"
            )
        if _entry_bound(source) > limits.files * ENTRIES_PER_FILE:
            raise checker.refuse(f"more than {limits.files} files (upload_max_files)")
        try:
            self.archive = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise checker.refuse(f"not a zip archive ({exc})") from None
        try:
            self._infos = self._check_entries(checker)
            self.members = self._inflate_all(checker)
        except BaseException:
            self.archive.close()
            raise

    def _check_entries(self, checker: _Checker) -> dict[str, zipfile.ZipInfo]:
        infos: dict[str, zipfile.ZipInfo] = {}
        folders: set[str] = set()
        for info in self.archive.infolist():
            if "\x00" in info.orig_filename:  # zipfile cuts the name at a NUL
                raise checker.refuse(f"refusing unsafe file name {info.orig_filename!r}")
            kind = stat.S_IFMT(info.external_attr >> _FILE_ATTRIBUTE_UNIX)
            if kind == stat.S_IFLNK:
                raise checker.refuse(f"refusing symlink {info.filename!r}")
            if info.is_dir():
                if kind not in (0, stat.S_IFDIR):
                    raise checker.refuse(f"refusing {info.filename!r}: not a regular file")
                continue
            name = checker.name(info.filename)
            if kind not in (0, stat.S_IFREG):
                raise checker.refuse(f"refusing {name!r}: not a regular file")
            if info.flag_bits & _ENCRYPTED:
                raise checker.refuse(f"refusing {name!r}: encrypted")
            if info.compress_type not in _INFLATABLE:
                raise checker.refuse(
                    f"refusing {name!r}: compression method {info.compress_type} "
                    "(only stored and deflated members are accepted)"
                )
            if name in infos:
                raise checker.refuse(f"{name!r} appears twice")
            infos[name] = info
            parts = name.split("/")
            folders.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
            if len(infos) > checker.limits.files:
                raise checker.refuse(f"more than {checker.limits.files} files (upload_max_files)")
        clashes = sorted(folders & infos.keys())
        if clashes:
            raise checker.refuse(f"{clashes[0]!r} is both a file and a directory")
        return infos

    def _inflate_all(self, checker: _Checker) -> list[Member]:
        """Every member's real size, counted while inflating it; the limits stop it early."""
        for name, info in self._infos.items():
            ratio_bound = max(RATIO_FLOOR, checker.limits.ratio * info.compress_size)
            size = 0
            try:
                with self.archive.open(info) as stream:
                    while piece := stream.read(PIECE):
                        size += len(piece)
                        checker.size(name, size, checker.total + size)
                        if size > ratio_bound:
                            raise checker.refuse(
                                f"{name!r} inflates more than {checker.limits.ratio:g} times "
                                "its compressed size (upload_max_ratio)"
                            )
            except BundleError:
                raise
            except _CORRUPT as exc:
                raise checker.refuse(f"{name!r} is corrupt ({exc})") from None
            checker.add(name, size)
        return checker.members

    def open_member(self, member: Member) -> IO[bytes]:
        return self.archive.open(self._infos[member.name])

    def close(self) -> None:
        self.archive.close()


# What a zip entry may add to its data: its local and central headers (76 bytes), its name
# in each (a store key's name is at most 1,024 bytes) and extra fields (a real entry's are a
# few dozen bytes).
ENTRY_OVERHEAD = 4 << 10


def _largest_zip(limits: UploadLimits) -> int:
    """The largest zip the limits could accept: every entry's data (deflate makes data it
    cannot compress larger by at most 5 bytes in 16 KiB, under a thousandth) and headers."""
    return (
        limits.total_bytes
        + limits.total_bytes // 1000
        + (limits.files * ENTRIES_PER_FILE * ENTRY_OVERHEAD)
    )


def _entry_bound(source: Path) -> int:
    """At least the number of entries in the zip at ``source``, read in pieces.

    Every central directory entry starts with :data:`SIGNATURE`, so counting it in the raw
    file bounds the entry count from above (file data may hold the bytes too, which only
    over-counts) without trusting the archive's own count or parsing anything.
    """
    count = 0
    tail = b""
    try:
        with source.open("rb") as file:
            while piece := file.read(PIECE):
                window = tail + piece
                count += window.count(SIGNATURE)
                tail = window[-(len(SIGNATURE) - 1) :]
    except OSError as exc:
        raise BundleError(f"{source}: unreadable ({exc.strerror})") from None
    return count
