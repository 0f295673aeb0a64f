"""``docs upload`` of hostile sources: links, special files, escaping names, bombs and floods.

Every refusal is one line on stderr, exit 1, and nothing written (an older site stays as it
was). Bombs and floods run the real command in a subprocess whose peak memory is measured.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.conveyor.bundle import BundleError, UploadLimits, open_bundle, pieces
from pythonhosted.storage import open_store
from support.conveyor import served_files
from support.measured import run_measured

MiB = 2**20
GiB = 2**30
RSS_BOUND = 300 * MiB
DEFAULT_FILE_LIMIT = 128 * MiB
OLD_SITE = {"proj/index.html": b"old front page", "proj/old.html": b"old page"}
PIECE = MiB


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def objects(url: str) -> dict[str, bytes]:
    store = open_store(url)

    async def read() -> dict[str, bytes]:
        return {item.key: await store.get_bytes(item.key) for item in await store.list()}

    return asyncio.run(read())


@pytest.fixture
def docs(tmp_path: Path) -> str:
    """A docs store that already holds an older site, which a refused upload must not touch."""
    url = f"file://{tmp_path}/docs"
    store = open_store(url)
    for key, data in OLD_SITE.items():
        asyncio.run(store.put(key, data))
    return url


def refused(docs: str, source: Path, message: str) -> None:
    """``docs upload`` of ``source`` fails with exactly ``message`` and writes nothing."""
    code, output = cli("docs", "upload", "--store", docs, "proj", str(source))
    assert (code, output) == (1, f"Error: {source}: {message}\n")
    assert objects(docs) == OLD_SITE


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


# --- directories ---------------------------------------------------------------------------


def _file_link(site: Path) -> str:
    (site / "leak.txt").symlink_to("/etc/passwd")
    return "refusing symlink 'leak.txt'"


def _directory_link(site: Path) -> str:
    (site / "_static" / "etc").symlink_to("/etc", target_is_directory=True)
    return "refusing symlink '_static/etc'"


def _inside_link(site: Path) -> str:
    (site / "copy.html").symlink_to("index.html")
    return "refusing symlink 'copy.html'"


def _dangling_link(site: Path) -> str:
    (site / "_static" / "gone.css").symlink_to("/nonexistent/gone.css")
    return "refusing symlink '_static/gone.css'"


def _fifo(site: Path) -> str:
    os.mkfifo(site / "_static" / "pipe.js")
    return "refusing '_static/pipe.js': not a regular file"


def _socket(site: Path) -> str:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(site / "sock"))
    server.close()
    return "refusing 'sock': not a regular file"


def _device(site: Path) -> str:
    try:
        os.mknod(site / "null.html", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    return "refusing 'null.html': not a regular file"


@pytest.mark.parametrize(
    "make",
    [_file_link, _directory_link, _inside_link, _dangling_link, _fifo, _socket, _device],
)
def test_directory_links_and_special_files(docs: str, tmp_path: Path, make: object) -> None:
    site = tree(tmp_path / "site", {"index.html": b"new", "_static/site.css": b"body {}"})
    message = make(site)  # type: ignore[operator]
    refused(docs, site, message)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("a\\b.html", "'a\\\\b.html'"),
        ("line\nbreak.html", "'line\\nbreak.html'"),
        ("escape\x1b[31m.html", "'escape\\x1b[31m.html'"),
        (os.fsdecode(b"latin1-\xe9.html"), "'latin1-\\udce9.html'"),
    ],
)
def test_directory_names_that_are_no_safe_key(
    docs: str, tmp_path: Path, name: str, shown: str
) -> None:
    site = tree(tmp_path / "site", {"index.html": b"new"})
    (site / name).write_bytes(b"x")
    refused(docs, site, f"refusing unsafe file name {shown}")


def test_directory_name_too_long_for_a_store(docs: str, tmp_path: Path) -> None:
    deep = "/".join(["d" * 200] * 6) + "/page.html"
    site = tree(tmp_path / "site", {"index.html": b"new", deep: b"x"})
    refused(docs, site, f"refusing file name {deep[:60]!r}...: too long")


def test_directory_over_the_limits(
    docs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tree(tmp_path / "site", {"index.html": b"new"})
    with (site / "huge.bin").open("wb") as sparse:  # 2 GiB that take no disk
        sparse.truncate(2 * GiB)
    refused(docs, site, f"'huge.bin' is over {DEFAULT_FILE_LIMIT} bytes (upload_max_file_bytes)")
    (site / "huge.bin").unlink()
    tree(site, {f"page{number}.html": b"x" * 1000 for number in range(10)})
    monkeypatch.setenv("PYTHONHOSTED_CONVEYOR__UPLOAD_MAX_TOTAL_BYTES", "9999")
    refused(docs, site, "over 9999 bytes in all (upload_max_total_bytes)")
    monkeypatch.setenv("PYTHONHOSTED_CONVEYOR__UPLOAD_MAX_FILES", "10")
    monkeypatch.delenv("PYTHONHOSTED_CONVEYOR__UPLOAD_MAX_TOTAL_BYTES")
    refused(docs, site, "more than 10 files (upload_max_files)")
    (site / "page0.html").unlink()
    assert cli("docs", "upload", "--store", docs, "proj", str(site)) == (
        0,
        "proj: 10 files written, 0 old files removed\n",
    )


def test_directory_changed_after_the_check(tmp_path: Path) -> None:
    """What the check saw is what is read: growth, a swapped-in link, a linked directory."""
    site = tree(
        tmp_path / "site", {"index.html": b"12345", "a.html": b"a", "sub/page.html": b"page"}
    )
    limits = UploadLimits(MiB, GiB, 100, 100.0)
    bundle = open_bundle(site, "proj", limits)
    members = {member.name: member for member in bundle.members}
    try:
        (site / "index.html").write_bytes(b"123456")
        with pytest.raises(BundleError, match=r"'index.html' changed while uploading$"):
            list(pieces(bundle, members["index.html"]))
        (site / "a.html").unlink()
        (site / "a.html").symlink_to("/etc/passwd")
        with pytest.raises(BundleError, match=r"'a.html' changed while uploading \(.*\)$"):
            list(pieces(bundle, members["a.html"]))
        (site / "sub").rename(site / "elsewhere")
        (site / "sub").symlink_to(site / "elsewhere", target_is_directory=True)
        with pytest.raises(BundleError, match=r"'sub/page.html' changed while uploading \("):
            list(pieces(bundle, members["sub/page.html"]))
    finally:
        bundle.close()


# --- zip archives ----------------------------------------------------------------------------


def zip_of(path: Path, members: Iterable[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info, data in members:
            archive.writestr(info, data)
    return path


def member(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def patched(path: Path, old: bytes, new: bytes) -> Path:
    """Rewrite bytes of an archive (names, flags) where zipfile's writer will not go."""
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new))
    return path


def test_zip_members_that_are_links(docs: str, tmp_path: Path) -> None:
    link = member("leak.txt", stat.S_IFLNK | 0o777)
    archive = zip_of(tmp_path / "a.zip", [("index.html", b"new"), (link, b"/etc/passwd")])
    refused(docs, archive, "refusing symlink 'leak.txt'")
    folder = member("_static/", stat.S_IFLNK | 0o777)
    archive = zip_of(tmp_path / "b.zip", [("index.html", b"new"), (folder, b"/etc")])
    refused(docs, archive, "refusing symlink '_static/'")


@pytest.mark.parametrize(
    ("mode", "what"),
    [
        (stat.S_IFIFO | 0o644, "'pipe': not a regular file"),
        (stat.S_IFCHR | 0o644, "'pipe': not a regular file"),
        (stat.S_IFBLK | 0o644, "'pipe': not a regular file"),
        (stat.S_IFSOCK | 0o644, "'pipe': not a regular file"),
    ],
)
def test_zip_members_that_are_special_files(
    docs: str, tmp_path: Path, mode: int, what: str
) -> None:
    archive = zip_of(tmp_path / "a.zip", [("index.html", b"new"), (member("pipe", mode), b"")])
    refused(docs, archive, f"refusing {what}")


@pytest.mark.parametrize(
    "name",
    [
        "/etc/cron.d/evil",
        "../up.html",
        "a/../../up.html",
        "..\\up.html",
        "a\\b.html",
        "./a.html",
        "a//b.html",
        "a/./b.html",
        ".",
        "..",
        "esc\x1b[2J.html",
        "tab\t.html",
        "cr\r.html",
        "del\x7f.html",
    ],
)
def test_zip_names_that_leave_the_directory(docs: str, tmp_path: Path, name: str) -> None:
    archive = zip_of(tmp_path / "a.zip", [("index.html", b"new"), (name, b"x")])
    refused(docs, archive, f"refusing unsafe file name {name!r}")


def test_zip_name_with_a_nul(docs: str, tmp_path: Path) -> None:
    """zipfile cuts a name at its NUL; the name as stored is what is checked."""
    archive = zip_of(tmp_path / "a.zip", [("index.html", b"new"), ("page.html@.js", b"x")])
    patched(archive, b"page.html@.js", b"page.html\x00.js")
    refused(docs, archive, "refusing unsafe file name 'page.html\\x00.js'")


def test_zip_members_that_cannot_be_inflated_safely(docs: str, tmp_path: Path) -> None:
    for method, number in ((zipfile.ZIP_BZIP2, 12), (zipfile.ZIP_LZMA, 14)):
        info = zipfile.ZipInfo("data.bin")
        info.compress_type = method
        archive = zip_of(tmp_path / f"{number}.zip", [("index.html", b"new"), (info, b"x")])
        refused(
            docs,
            archive,
            f"refusing 'data.bin': compression method {number} "
            "(only stored and deflated members are accepted)",
        )
    archive = zip_of(tmp_path / "e.zip", [("secret.html", b"x"), ("index.html", b"new")])
    # The central directory's general-purpose flags (8 bytes into each entry): "encrypted".
    entry = archive.read_bytes().index(b"PK\x01\x02")
    data = bytearray(archive.read_bytes())
    data[entry + 8] |= 0x1
    archive.write_bytes(bytes(data))
    refused(docs, archive, "refusing 'secret.html': encrypted")


def test_zip_names_twice_or_file_and_directory(docs: str, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        twice = zip_of(tmp_path / "a.zip", [("index.html", b"new"), ("index.html", b"evil")])
    refused(docs, twice, "'index.html' appears twice")
    clash = zip_of(tmp_path / "b.zip", [("guide", b"a file"), ("guide/index.html", b"a page")])
    refused(docs, clash, "'guide' is both a file and a directory")


def test_zip_that_is_corrupt_or_lies_about_sizes(docs: str, tmp_path: Path) -> None:
    page = b"<p>" + b"a page of docs " * 500 + b"</p>"
    good = zip_of(tmp_path / "good.zip", [("index.html", b"new"), ("page.html", page)])
    deflated = zlib.compress(page)[2:-4]  # raw deflate, as in the archive
    # A flipped bit in the data: the CRC no longer matches.
    flipped = bytearray(deflated)
    flipped[len(flipped) // 2] ^= 0x40
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(good.read_bytes().replace(deflated, bytes(flipped)))
    code, output = cli("docs", "upload", "--store", docs, "proj", str(corrupt))
    assert code == 1
    assert re.fullmatch(rf"Error: {corrupt}: 'page.html' is corrupt \(.+\)\n", output), output
    assert objects(docs) == OLD_SITE
    # Headers that claim 100 bytes for 7,500: what is inflated is counted, and the CRC fails.
    liar = tmp_path / "liar.zip"
    liar.write_bytes(good.read_bytes())
    patched(liar, struct.pack("<L", len(page)), struct.pack("<L", 100))
    code, output = cli("docs", "upload", "--store", docs, "proj", str(liar))
    assert code == 1
    assert output.startswith(f"Error: {liar}: 'page.html' is corrupt (")
    assert objects(docs) == OLD_SITE


# --- bombs and floods, in a subprocess whose peak memory is measured --------------------------


def zip_bomb(path: Path, size: int, name: str = "bomb.bin") -> Path:
    """A real zip whose one deflated member inflates to ``size`` zero bytes (~1/1000 of it).

    Written block by block (each block independent of the last), so building it holds 1 MiB.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(PIECE)) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = compressor.flush()
    blocks, rest = divmod(size, PIECE)
    assert rest == 0
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(bytes(PIECE), crc)
    packed = len(block) * blocks + len(final)
    encoded = name.encode()
    header = struct.pack(
        zipfile.structFileHeader,
        zipfile.stringFileHeader,
        20,
        0,
        0,
        zipfile.ZIP_DEFLATED,
        0,
        0x21,
        crc,
        packed,
        size,
        len(encoded),
        0,
    )
    directory = struct.pack(
        zipfile.structCentralDir,
        zipfile.stringCentralDir,
        20,
        3,
        20,
        0,
        0,
        zipfile.ZIP_DEFLATED,
        0,
        0x21,
        crc,
        packed,
        size,
        len(encoded),
        0,
        0,
        0,
        0,
        (stat.S_IFREG | 0o644) << 16,
        0,
    )
    with path.open("wb") as file:
        file.write(header + encoded)
        for _ in range(blocks):
            file.write(block)
        file.write(final)
        start = file.tell()
        file.write(directory + encoded)
        end = struct.pack(
            zipfile.structEndArchive,
            zipfile.stringEndArchive,
            0,
            0,
            1,
            1,
            len(directory) + len(encoded),
            start,
            0,
        )
        file.write(end)
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = zip_bomb(tmp_path_factory.mktemp("bomb") / "docs.zip", 2 * GiB)
    with zipfile.ZipFile(path) as archive:  # a valid archive, as zipfile reads it
        (info,) = archive.infolist()
        assert (info.filename, info.file_size) == ("bomb.bin", 2 * GiB)
    assert path.stat().st_size < 3 * MiB
    return path


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, f"'bomb.bin' is over {DEFAULT_FILE_LIMIT} bytes (upload_max_file_bytes)"),
        (
            {"PYTHONHOSTED_CONVEYOR__UPLOAD_MAX_FILE_BYTES": str(4 * GiB)},
            "'bomb.bin' inflates more than 100 times its compressed size (upload_max_ratio)",
        ),
        (
            {
                "PYTHONHOSTED_CONVEYOR__UPLOAD_MAX_FILE_BYTES": str(4 * GiB),
                "PYTHONHOSTED_CONVEYOR__UPLOAD_MAX_RATIO": "10000",
            },
            f"over {GiB} bytes in all (upload_max_total_bytes)",
        ),
    ],
)
def test_zip_bomb_is_refused_in_bounded_memory(
    docs: str, bomb: Path, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    code, out, err, peak = run_measured(
        ["docs", "upload", "--store", docs, "proj", str(bomb)], tmp_path, env
    )
    assert (code, out, err) == (1, "", f"Error: {bomb}: {message}\n")
    assert peak < RSS_BOUND, f"peak RSS {peak / MiB:.0f} MiB"
    assert objects(docs) == OLD_SITE


def test_zip_with_more_entries_than_allowed_is_refused_before_it_is_parsed(
    docs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONHOSTED_CONVEYOR__UPLOAD_MAX_FILES", "10")
    many = zip_of(tmp_path / "many.zip", [(f"p{n}.html", b"x") for n in range(11)])
    refused(docs, many, "more than 10 files (upload_max_files)")
    # Over twice the limit (room for a directory entry per file): refused on the raw bytes,
    # before the archive is parsed (its end record is broken, so parsing it would fail).
    flood = zip_of(tmp_path / "flood.zip", [(f"p{n}.html", b"x") for n in range(21)])
    refused(
        docs, patched(flood, b"PK\x05\x06", b"XX\x05\x06"), "more than 10 files (upload_max_files)"
    )
    broken = zip_of(tmp_path / "broken.zip", [(f"p{n}.html", b"x") for n in range(20)])
    refused(
        docs,
        patched(broken, b"PK\x05\x06", b"XX\x05\x06"),
        "not a zip archive (File is not a zip file)",
    )
    folders = [(f"d{n}/", b"") for n in range(10)]
    ten = zip_of(tmp_path / "ten.zip", folders + [(f"d{n}/p.html", b"x") for n in range(10)])
    assert cli("docs", "upload", "--store", docs, "proj", str(ten)) == (
        0,
        "proj: 10 files written, 0 old files removed\n",
    )


def test_a_file_larger_than_any_acceptable_zip_is_refused_unread(
    docs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 10 GB file (sparse: a few blocks on disk) was read whole to count its entries before
    anything else was checked: a minute of reading, to say "not a zip"."""
    monkeypatch.setenv("PYTHONHOSTED_CONVEYOR__UPLOAD_MAX_FILES", "10")
    huge = tmp_path / "huge.zip"
    with huge.open("wb") as sparse:
        sparse.truncate(10 << 30)
    refused(
        docs,
        huge,
        f"{10 << 30} bytes, more than a zip of {1 << 30} bytes in all can be "
        "(upload_max_total_bytes)",
    )


def test_twenty_thousand_files_in_bounded_memory(tmp_path: Path) -> None:
    docs = f"file://{tmp_path}/docs"
    archive = tmp_path / "api.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as writer:
        for number in range(20_000):
            writer.writestr(f"api/m{number // 500}/f{number}.html", b"<p>%d</p>" % number)
    code, out, err, peak = run_measured(
        ["docs", "upload", "--store", docs, "proj", str(archive)], tmp_path
    )
    assert (code, out, err) == (0, "proj: 20000 files written, 0 old files removed\n", "")
    assert peak < RSS_BOUND, f"peak RSS {peak / MiB:.0f} MiB"
    files = served_files(docs, "proj")
    assert len([name for name in files if name.startswith("api/m39/")]) == 500
    assert files["api/m39/f19999.html"] == b"<p>19999</p>"


def _random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(size // MiB):
            block = os.urandom(MiB)
            digest.update(block)
            file.write(block)
    return digest.hexdigest()


def _sparse_file(path: Path, size: int) -> str:
    """``size`` zero bytes that take no disk and no time to write."""
    with path.open("wb") as file:
        file.truncate(size)
    digest = hashlib.sha256()
    for _ in range(size // MiB):
        digest.update(bytes(MiB))
    return digest.hexdigest()


@pytest.mark.parametrize(
    ("kind", "store", "size"),
    [("directory", "file", DEFAULT_FILE_LIMIT), ("zip", "s3", 64 * MiB)],
)
def test_large_files_stream_in_bounded_memory(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, store: str, size: int
) -> None:
    """A file as large as the per-file limit goes up in parts: the command's peak memory stays
    under the file's own size plus the interpreter's."""
    docs = f"file://{tmp_path}/docs" if store == "file" else request.getfixturevalue("s3_url")
    site = tree(tmp_path / "site", {"index.html": b"front"})
    make = _sparse_file if store == "file" else _random_file
    digest = make(site / "manual.pdf", size)
    source = site
    if kind == "zip":
        source = tmp_path / "site.zip"
        with zipfile.ZipFile(source, "w", compression=zipfile.ZIP_DEFLATED) as writer:
            writer.write(site / "index.html", "index.html")
            writer.write(site / "manual.pdf", "manual.pdf", zipfile.ZIP_STORED)
    code, out, err, peak = run_measured(
        ["docs", "upload", "--store", docs, "proj", str(source)], tmp_path
    )
    assert (code, out, err) == (0, "proj: 2 files written, 0 old files removed\n", "")
    assert peak < 150 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
    stored = served_files(docs, "proj")["manual.pdf"]
    assert hashlib.sha256(stored).hexdigest() == digest
