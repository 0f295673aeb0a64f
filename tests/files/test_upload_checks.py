"""`files upload` refuses broken and hostile distributions, one line each, storing nothing.

Every archive here is built in the test, byte by byte where a normal tool would refuse to write
it (links out of the tree, devices, lying sizes).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import random
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pythonhosted.archives import TAR_MAX_MEMBERS, UNPACK_FLOOR, ZIP_MAX_ENTRIES, tar_gz_member
from pythonhosted.catalog import project_records
from pythonhosted.cli import main
from pythonhosted.files.upload import upload
from pythonhosted.samples import build_sdist, build_wheel
from pythonhosted.storage import Store, StoreUnavailable, open_store
from pythonhosted.web.server import free_port
from support.processes import PYTHONHOSTED, started

ROOT = "demo_pkg-1.0"
SDIST = f"{ROOT}.tar.gz"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
MiB = 2**20


def _pkg_info(name: str = "demo-pkg", version: str = "1.0", extra: str = "") -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{extra}\n".encode()


def _entry(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def _tar_gz(*entries: tuple) -> bytes:
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def _sdist(*entries: tuple) -> bytes:
    return _tar_gz(_entry(f"{ROOT}/PKG-INFO", _pkg_info()), *entries)


def _zip(*members: tuple[str, bytes], symlink: str | None = None, method: int = 8) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            # Dated, not stamped with the time of writing: these bytes name the parametrized
            # tests, and workers collecting a second apart would disagree on the names (which
            # pytest-xdist refuses).
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o600 << 16  # as writestr gives a member named by a string
            archive.writestr(info, data, compress_type=method)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16) | 0x20  # a symlink, as Info-ZIP marks it
            archive.writestr(info, "../../etc/passwd")
    return buffer.getvalue()


def _wheel(metadata: bytes = b"", *members: tuple[str, bytes], **options: object) -> bytes:
    metadata = metadata or _pkg_info()
    files = [(f"{ROOT}.dist-info/METADATA", metadata), ("demo_pkg/__init__.py", b""), *members]
    return _zip(*files, **options)  # type: ignore[arg-type]


def _bomb() -> bytes:
    """A valid sdist whose second member is 64 MiB of zeros: about 64 KB packed."""
    buffer = io.BytesIO()
    zeros = bytes(MiB)
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=1) as compressed,
        tarfile.open(fileobj=compressed, mode="w|") as archive,
    ):
        info, data = _entry(f"{ROOT}/PKG-INFO", _pkg_info())
        archive.addfile(info, io.BytesIO(data))
        big = tarfile.TarInfo(f"{ROOT}/zeros.bin")
        big.size = 64 * MiB
        archive.addfile(big, io.BufferedReader(_Repeat(zeros, 64), MiB))  # type: ignore[arg-type]
    return buffer.getvalue()


class _Repeat(io.RawIOBase):
    def __init__(self, piece: bytes, times: int) -> None:
        self.piece, self.left = piece, times

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self.left:
            return 0
        self.left -= 1
        buffer[: len(self.piece)] = self.piece
        return len(self.piece)


VALID = _sdist()
REFUSED = [
    ("junk-1.0.tar.gz", b"junk", "not a valid .tar.gz archive (Not a gzipped file (b'ju'))"),
    (
        SDIST,
        VALID[: len(VALID) // 2],
        "not a valid .tar.gz archive "
        "(Compressed file ended before the end-of-stream marker was reached)",
    ),
    (SDIST, gzip.compress(b"not a tar", mtime=0), "not a valid .tar.gz archive (truncated header)"),
    (SDIST, _tar_gz(_entry(f"{ROOT}/setup.py", b"")), f"no {ROOT}/PKG-INFO"),
    (
        SDIST,
        _tar_gz(_entry("other-1.0/PKG-INFO", _pkg_info())),
        "member 'other-1.0/PKG-INFO' is outside demo_pkg-1.0/",
    ),
    (
        SDIST,
        _tar_gz(_entry(f"{ROOT}/PKG-INFO", _pkg_info(name="other"))),
        "PKG-INFO names project 'other', not 'demo-pkg'",
    ),
    (
        SDIST,
        _tar_gz(_entry(f"{ROOT}/PKG-INFO", _pkg_info(version="2.0"))),
        "PKG-INFO has version '2.0', not '1.0'",
    ),
    (SDIST, _tar_gz(_entry(f"{ROOT}/PKG-INFO", b"Name: demo-pkg\n")), "PKG-INFO has no Version"),
    (
        SDIST,
        _sdist(_entry(f"{ROOT}/../../etc/cron.d/x", b"boom")),
        "member 'demo_pkg-1.0/../../etc/cron.d/x' escapes the archive",
    ),
    (SDIST, _sdist(_entry("/etc/passwd", b"")), "member '/etc/passwd' escapes the archive"),
    (
        SDIST,
        _sdist(_entry(f"{ROOT}/link", kind=tarfile.SYMTYPE, link="/etc/passwd")),
        "member 'demo_pkg-1.0/link' links outside the archive",
    ),
    (
        SDIST,
        _sdist(_entry(f"{ROOT}/link", kind=tarfile.SYMTYPE, link="../../home")),
        "member 'demo_pkg-1.0/link' links outside the archive",
    ),
    (
        SDIST,
        _sdist(_entry(f"{ROOT}/hard", kind=tarfile.LNKTYPE, link="../../etc/passwd")),
        "member 'demo_pkg-1.0/hard' links outside the archive",
    ),
    (
        SDIST,
        _sdist(_entry(f"{ROOT}/tty", kind=tarfile.CHRTYPE)),
        "member 'demo_pkg-1.0/tty' is a device or pipe",
    ),
    (
        SDIST,  # a symlink standing in for PKG-INFO (to anything) is not core metadata
        _tar_gz(
            _entry(f"{ROOT}/meta", _pkg_info()),
            _entry(f"{ROOT}/PKG-INFO", kind=tarfile.SYMTYPE, link="meta"),
        ),
        "demo_pkg-1.0/PKG-INFO is not a regular file",
    ),
    (
        SDIST,
        _sdist(_entry(f"{ROOT}/PKG-INFO", _pkg_info())),
        "more than one demo_pkg-1.0/PKG-INFO",
    ),
    (
        SDIST,
        _tar_gz(_entry(f"{ROOT}/PKG-INFO", _pkg_info(extra="Description: " + "x" * MiB))),
        f"demo_pkg-1.0/PKG-INFO is larger than {MiB} bytes",
    ),
    (SDIST, _bomb(), "unpacks to more than 50x its size"),
    (
        f"{ROOT}.zip",
        _zip((f"{ROOT}/PKG-INFO", _pkg_info()), ("../evil.py", b"")),
        "member '../evil.py' escapes the archive",
    ),
    (
        f"{ROOT}.zip",
        _zip((f"{ROOT}/PKG-INFO", _pkg_info()), symlink=f"{ROOT}/link"),
        "member 'demo_pkg-1.0/link' is a symlink",
    ),
    (f"{ROOT}.zip", _zip((f"{ROOT}/setup.py", b"")), f"no {ROOT}/PKG-INFO"),
    (WHEEL, b"junk", "not a valid zip archive (File is not a zip file)"),
    (WHEEL, _wheel(_pkg_info(name="other")), "METADATA names project 'other', not 'demo-pkg'"),
    (WHEEL, _wheel(_pkg_info(version="1.1")), "METADATA has version '1.1', not '1.0'"),
    (WHEEL, _wheel(b"", ("..\\evil.py", b"")), "member '..\\\\evil.py' escapes the archive"),
    (WHEEL, _wheel(b"", ("/abs.py", b"")), "member '/abs.py' escapes the archive"),
    (WHEEL, _wheel(symlink="demo_pkg/link"), "member 'demo_pkg/link' is a symlink"),
    (
        WHEEL,
        _wheel(method=zipfile.ZIP_BZIP2),
        f"member '{ROOT}.dist-info/METADATA' uses an unsupported compression method",
    ),
    (WHEEL, _zip(("demo_pkg/__init__.py", b"")), "no unique .dist-info/METADATA"),
    (
        WHEEL,
        _wheel(_pkg_info(extra="Description: " + random.Random(1).randbytes(MiB).hex())),
        f"{ROOT}.dist-info/METADATA is larger than {MiB} bytes",
    ),
    (WHEEL, _wheel(b"", ("demo_pkg/zeros", bytes(64 * MiB))), "unpacks to more than 50x its size"),
    # Parsing costs field names x fields: 80,000 made-up ones (under 1 MiB) took minutes.
    (
        WHEEL,
        _wheel(_pkg_info(extra="".join(f"X-{n}: v\n" for n in range(80_000)))),
        "METADATA has 80003 field names (at most 128)",
    ),
]


def _write(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("filename", "data", "reason"), REFUSED)
def test_refused(tmp_path: Path, filename: str, data: bytes, reason: str) -> None:
    path = _write(tmp_path / "dist", filename, data)
    store = tmp_path / "store"
    result = CliRunner().invoke(main, ["files", "upload", "--store", f"file://{store}", str(path)])
    assert (result.exit_code, result.output) == (1, f"error: {filename}: {reason}\n")
    assert [p for p in store.rglob("*") if p.is_file()] == []  # nothing stored


def test_thousands_of_lines_of_a_few_fields_are_accepted(tmp_path: Path) -> None:
    """Only distinct field names are bounded: 20,000 classifiers parse in linear time."""
    classifiers = "".join(f"Classifier: Topic :: Number {n}\n" for n in range(20_000))
    path = _write(tmp_path / "dist", WHEEL, _wheel(_pkg_info(extra=classifiers)))
    store = f"file://{tmp_path}/store"
    result = CliRunner().invoke(main, ["files", "upload", "--store", store, str(path)])
    assert (result.exit_code, result.output.rsplit("/", 1)[-1]) == (0, f"{WHEEL}\n")


def test_refusals_leave_the_good_files_stored(tmp_path: Path) -> None:
    good = _write(tmp_path / "dist", SDIST, VALID)
    bad = _write(tmp_path / "dist", "junk-1.0.tar.gz", b"junk")
    wheel = _write(tmp_path / "dist", WHEEL, _wheel())
    store = f"file://{tmp_path}/store"
    result = CliRunner().invoke(
        main, ["files", "upload", "--store", store, *map(str, [good, bad, wheel])]
    )
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert (
        lines[1]
        == "error: junk-1.0.tar.gz: not a valid .tar.gz archive (Not a gzipped file (b'ju'))"
    )
    assert [line.rsplit("/", 1)[1] for line in (lines[0], lines[2])] == [SDIST, WHEEL]
    catalog = sorted(p.name for p in (tmp_path / "store" / "catalog").rglob("*.json"))
    assert catalog == [f"{WHEEL}.json", f"{SDIST}.json"]


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        # PEP 625 names, and the legacy ones older tools wrote (the top directory follows the
        # filename; names compare canonicalised, versions normalised).
        build_sdist("Demo.Pkg", "1.0"),
        ("Demo.Pkg-1.0.tar.gz", _tar_gz(_entry("Demo.Pkg-1.0/PKG-INFO", _pkg_info("Demo.Pkg")))),
        ("demo-pkg-1.0.tar.gz", _tar_gz(_entry("demo-pkg-1.0/PKG-INFO", _pkg_info()))),
        (SDIST, _tar_gz(_entry(f"{ROOT}/PKG-INFO", _pkg_info(version="1.0.0")))),
        (SDIST, _sdist(_entry(f"{ROOT}/docs/README", kind=tarfile.SYMTYPE, link="../README"))),
        (f"{ROOT}.zip", _zip((f"{ROOT}/PKG-INFO", _pkg_info()), (f"{ROOT}/setup.py", b""))),
        build_wheel("Demo.Pkg", "1.0"),
        (WHEEL, _wheel(_pkg_info(name="Demo_Pkg", version="1.0.0"))),
    ],
)
def test_accepted(tmp_path: Path, filename: str, data: bytes) -> None:
    path = _write(tmp_path / "dist", filename, data)
    result = CliRunner().invoke(
        main, ["files", "upload", "--store", f"file://{tmp_path}/store", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("/" + filename)


def test_the_bomb_is_small_and_stops_at_the_budget() -> None:
    """What the refusal above guards against: 64 MiB from 64 KB, a thousandfold, read only up
    to the floor of the budget (16 MiB) before it is refused."""
    packed = _bomb()
    assert len(packed) < MiB and 50 * len(packed) < UNPACK_FLOOR < 64 * MiB


def test_a_200_mb_sdist_uploads_holding_it_in_memory_once(tmp_path: Path) -> None:
    """A hundred times a typical sdist, incompressible (so the check reads all of it): the
    upload keeps one copy in memory, as it did before the checks, and the check adds little."""
    size = 200 * MiB
    path = tmp_path / "dist" / "big_pkg-1.0.tar.gz"
    path.parent.mkdir()
    rng = random.Random(1)
    with (
        path.open("wb") as out,
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=0, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w|") as archive,
    ):
        info, data = _entry("big_pkg-1.0/PKG-INFO", _pkg_info("big-pkg"))
        archive.addfile(info, io.BytesIO(data))
        big = tarfile.TarInfo("big_pkg-1.0/data.bin")
        big.size = size
        archive.addfile(big, io.BufferedReader(_Random(rng, size), MiB))  # type: ignore[arg-type]
    # A parent that reports its children's peak memory: the upload's alone.
    report = (
        "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
    )
    command = [sys.executable, "-c", report, *PYTHONHOSTED, "files", "upload"]
    command += ["--store", f"file://{tmp_path}/store", str(path)]
    with started(command, stdout=subprocess.PIPE) as process:
        output, _ = process.communicate(timeout=240)
    assert process.returncode == 0
    *lines, peak_kb = output.decode().splitlines()
    assert lines[0].endswith("/big_pkg-1.0.tar.gz")
    stored = next((tmp_path / "store" / "packages").rglob("big_pkg-1.0.tar.gz"))
    assert stored.stat().st_size == path.stat().st_size
    peak = int(peak_kb) * 1024  # Linux counts kilobytes
    assert peak < path.stat().st_size + 160 * MiB, f"peak RSS {peak / MiB:.0f} MiB"


class _Random(io.RawIOBase):
    def __init__(self, rng: random.Random, size: int) -> None:
        self.rng, self.left = rng, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = self.rng.randbytes(count)
        self.left -= count
        return count


@pytest.mark.long
def test_an_sdist_of_too_many_members_is_refused_before_the_unpack_budget_ends_it(
    tmp_path: Path,
) -> None:
    """One empty member past the bound, PKG-INFO last, under the unpack budget (a random
    member pays for the headers): refused in one line, nothing stored. Before, the whole
    stream was read at ~30 us of CPU a member: empty members with random names pack to ~13
    bytes (40x), so a 1 GiB upload (files.upload_max_bytes) of ~80 million of them took about
    45 minutes of CPU."""
    padding, random_bytes = _entry(f"{ROOT}/random.bin", random.Random(3).randbytes(3 * MiB))
    pkg_info, text = _entry(f"{ROOT}/PKG-INFO", _pkg_info())
    data = gzip.compress(
        b"".join(
            (
                padding.tobuf(tarfile.USTAR_FORMAT),
                random_bytes,
                *_empty_members(TAR_MAX_MEMBERS),
                pkg_info.tobuf(tarfile.USTAR_FORMAT),
                text.ljust(512, b"\0"),
                bytes(1024),
            )
        ),
        compresslevel=1,
        mtime=0,
    )
    path = _write(tmp_path / "dist", SDIST, data)
    store = tmp_path / "store"
    result = CliRunner().invoke(main, ["files", "upload", "--store", f"file://{store}", str(path)])
    assert (result.exit_code, result.output) == (
        1,
        f"error: {SDIST}: more than {TAR_MAX_MEMBERS:,} members\n",
    )
    assert [p for p in store.rglob("*") if p.is_file()] == []


def _empty_members(count: int) -> list[bytes]:
    """``count`` ustar headers of empty files, without tarfile's ~17 us each: every name's
    digits pair ``d`` with ``9 - d``, so all share one byte sum and hence one checksum."""
    template = tarfile.TarInfo(f"{ROOT}/{'0' * 6}{'9' * 6}").tobuf(tarfile.USTAR_FORMAT)
    start = len(ROOT) + 1
    before, after = template[:start], template[start + 12 :]
    complement = str.maketrans("0123456789", "9876543210")
    return [
        before + f"{n:06d}{f'{n:06d}'.translate(complement)}".encode() + after for n in range(count)
    ]


def test_many_members_cost_flat_memory_and_pkg_info_may_come_last() -> None:
    """Hatchling writes PKG-INFO last, so the whole stream is read; memory does not grow with
    the number of members (tarfile would keep each header: over 5 MiB for these)."""
    members = [_entry(f"{ROOT}/m/{n}.py", b"") for n in range(10_000)]
    data = _tar_gz(*members, _entry(f"{ROOT}/PKG-INFO", _pkg_info()))
    tracemalloc.start()
    try:
        found = tar_gz_member(io.BytesIO(data), f"{ROOT}/PKG-INFO", MiB, ROOT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == _pkg_info()
    assert peak < 4.5 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_a_zip_of_too_many_members_is_refused_before_its_directory_is_parsed(
    tmp_path: Path,
) -> None:
    """One member past the bound, all empty (18 MB): refused in one line, with memory near
    the archive's size. Before, parsing the directory of 100,000 empty members took 59 MB
    and 5 s of CPU, so an upload of 1 GiB (files.upload_max_bytes) would take gigabytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("demo_pkg-1.0.dist-info/METADATA", _pkg_info())
        for n in range(ZIP_MAX_ENTRIES):
            archive.writestr(zipfile.ZipInfo(f"demo_pkg/m{n}"), b"")
    path = _write(tmp_path / "dist", WHEEL, buffer.getvalue())
    del buffer
    store = tmp_path / "store"
    tracemalloc.start()
    try:
        result = CliRunner().invoke(
            main, ["files", "upload", "--store", f"file://{store}", str(path)]
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.exit_code, result.output) == (
        1,
        f"error: {WHEEL}: more than {ZIP_MAX_ENTRIES:,} members\n",
    )
    assert peak < path.stat().st_size + 4 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert [p for p in store.rglob("*") if p.is_file()] == []


def test_limits_and_store_come_from_settings(tmp_path: Path) -> None:
    sdist_bytes = _sdist(_entry(f"{ROOT}/data", random.Random(2).randbytes(5000)))
    wheel_bytes = _wheel(_pkg_info(extra="Summary: " + "x" * 2000))
    sdist = _write(tmp_path / "dist", SDIST, sdist_bytes)
    wheel = _write(tmp_path / "dist", WHEEL, wheel_bytes)
    assert len(wheel_bytes) < len(sdist_bytes)
    env = {
        "PYTHONHOSTED_FILES__PRIMARY": f"file://{tmp_path}/primary",
        "PYTHONHOSTED_FILES__UPLOAD_MAX_BYTES": str(len(wheel_bytes)),
        "PYTHONHOSTED_FILES__UPLOAD_METADATA_MAX_BYTES": "1000",
    }
    runner = CliRunner()
    refused = runner.invoke(main, ["files", "upload", str(sdist), str(wheel)], env=env)
    env["PYTHONHOSTED_FILES__UPLOAD_MAX_BYTES"] = str(len(sdist_bytes))
    stored = runner.invoke(main, ["files", "upload", str(sdist)], env=env)
    unset = runner.invoke(
        main, ["files", "upload", str(sdist)], env={"PYTHONHOSTED_FILES__PRIMARY": ""}
    )
    assert (refused.exit_code, refused.output.splitlines()) == (
        1,
        [
            f"error: {SDIST}: larger than {len(wheel_bytes)} bytes",
            f"error: {WHEEL}: {ROOT}.dist-info/METADATA is larger than 1000 bytes",
        ],
    )
    assert stored.exit_code == 0
    assert (tmp_path / "primary" / stored.output.strip()[1:]).read_bytes() == sdist_bytes
    assert (unset.exit_code, unset.output.splitlines()[-1]) == (
        2,
        "Error: no store: pass --store URL or set PYTHONHOSTED_FILES__PRIMARY",
    )


class FailingPuts:
    """A store whose puts of keys ending in ``suffix`` fail as an unreachable store's would."""

    def __init__(self, store: Store, suffix: str) -> None:
        self._store = store
        self.suffix = suffix

    async def put(self, key: str, data: bytes, **options: Any) -> None:
        if key.endswith(self.suffix):
            raise StoreUnavailable("connection refused")
        await self._store.put(key, data, **options)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], **options: Any) -> None:
        if key.endswith(self.suffix):
            raise StoreUnavailable("connection refused")
        await self._store.put_stream(key, chunks, **options)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


@pytest.mark.parametrize("failing", [".metadata", ".whl", ".json"])
def test_an_upload_that_fails_half_way_lists_nothing_and_a_retry_completes_it(
    tmp_path: Path, failing: str
) -> None:
    store = open_store(f"file://{tmp_path}/store")
    wheel = _wheel()
    with pytest.raises(StoreUnavailable):
        asyncio.run(upload(FailingPuts(store, failing), WHEEL, wheel))  # type: ignore[arg-type]
    assert asyncio.run(project_records(store, "demo-pkg")) == []  # nothing lists it
    record = asyncio.run(upload(store, WHEEL, wheel))
    assert asyncio.run(project_records(store, "demo-pkg")) == [record]
    assert (tmp_path / "store" / (record.path[1:] + ".metadata")).exists()


def test_a_store_that_fails_is_one_line_per_file(tmp_path: Path) -> None:
    closed = f"s3://bucket?endpoint=http://127.0.0.1:{free_port()}&allow_http=true"
    path = _write(tmp_path / "dist", SDIST, VALID)
    result = CliRunner().invoke(main, ["files", "upload", "--store", closed, str(path)])
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith(f"error: {SDIST}: store: ")


# An upload to a local directory killed after the wheel's bytes, before their metadata sidecar.
_KILLED_BEFORE_SIDECAR = """
import asyncio, os, signal, sys
from pathlib import Path
import pythonhosted.storage.directory as directory
from pythonhosted.files.upload import upload
from pythonhosted.storage import open_store

put = directory.obstore.put_async

async def put_or_die(store, key, *args, **kwargs):
    if key.startswith(".meta/") and key.endswith(".whl.json"):
        os.kill(os.getpid(), signal.SIGKILL)
    return await put(store, key, *args, **kwargs)

directory.obstore.put_async = put_or_die
asyncio.run(upload(open_store(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))
"""


def test_a_retry_after_a_kill_between_bytes_and_metadata_stores_the_metadata(
    tmp_path: Path,
) -> None:
    """SIGKILL between a wheel's bytes and their metadata sidecar: the retry found the bytes
    there and went on, so the record listed an object with no content type and no project,
    version or type (the edge's download lines name none: counted for no project)."""
    store_url = f"file://{tmp_path}/store"
    source = tmp_path / WHEEL
    source.write_bytes(_wheel())
    child = [sys.executable, "-c", _KILLED_BEFORE_SIDECAR, store_url, WHEEL, str(source)]
    with started(child) as killed:
        assert killed.wait(timeout=120) == -9
    store = open_store(store_url)
    assert asyncio.run(project_records(store, "demo-pkg")) == []
    record = asyncio.run(upload(store, WHEEL, source))
    info = asyncio.run(store.info(record.path[1:]))
    assert (info.content_type, dict(info.metadata)) == (
        "application/zip",
        {
            "project": "demo-pkg",
            "version": "1.0",
            "package-type": "bdist_wheel",
            "python-version": "py3",
        },
    )
    assert asyncio.run(store.get_bytes(record.path[1:])) == source.read_bytes()
