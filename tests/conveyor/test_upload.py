"""``pythonhosted docs upload|redirect`` and the sample site, through the CLI and over HTTP."""

from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.conveyor import ensure_sample_docs
from pythonhosted.conveyor.redirects import REDIRECTS_KEY, parse_redirects
from pythonhosted.storage import open_store
from support.conveyor import ConveyorFactory, served_files
from support.processes import wait_until


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def keys(url: str, prefix: str = "") -> list[str]:
    return [item.key for item in asyncio.run(open_store(url).list(prefix))]


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return (
        f"file://{tmp_path}/docs" if request.param == "file" else request.getfixturevalue("s3_url")
    )


def test_upload_replaces_a_site(
    store_url: str, tmp_path: Path, conveyor: ConveyorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = write_tree(
        tmp_path / "old",
        {"index.html": b"old front", "old-only.html": b"gone soon", "_static/a.css": b"a"},
    )
    new = tmp_path / "new.zip"
    with zipfile.ZipFile(new, "w") as archive:
        archive.writestr("index.html", b"new front")
        archive.writestr("guide/index.html", b"new guide")
        archive.writestr("_static/a.css", b"a2")
    neighbour = write_tree(tmp_path / "neighbour", {"index.html": b"neighbour"})

    assert cli("docs", "upload", "--store", store_url, "proj-x", str(neighbour))[0] == 0
    code, output = cli("docs", "upload", "--store", store_url, "proj", str(old))
    assert (code, output) == (0, "proj: 3 files written, 0 old files removed\n")
    with conveyor(docs=store_url) as base:
        assert httpx.get(base + "/proj/").content == b"old front"
        assert httpx.get(base + "/proj/old-only.html").status_code == 200
        code, output = cli("docs", "upload", "--store", store_url, "proj", str(new))
        # The replaced site stays for readers that followed the old pointer (600 s).
        assert (code, output) == (0, "proj: 3 files written, 0 old files removed\n")
        wait_until(lambda: httpx.get(base + "/proj/").content == b"new front")  # S3: 1 s
        assert httpx.get(base + "/proj/guide").headers["location"] == "/proj/guide/"
        assert httpx.get(base + "/proj/guide/").content == b"new guide"
        assert httpx.get(base + "/proj/_static/a.css").content == b"a2"
        assert httpx.get(base + "/proj/old-only.html").status_code == 404
        # A project whose name starts with this one's is not touched.
        assert httpx.get(base + "/proj-x/").content == b"neighbour"
        # The sites' own folder is no project.
        assert httpx.get(base + "/.sites/proj/current").status_code == 404
    assert served_files(store_url, "proj") == {
        "_static/a.css": b"a2",
        "guide/index.html": b"new guide",
        "index.html": b"new front",
    }
    monkeypatch.setenv("PYTHONHOSTED_CONVEYOR__DOCS_KEEP_REPLACED", "0")
    code, output = cli("docs", "upload", "--store", store_url, "proj", str(new))
    assert (code, output) == (0, "proj: 3 files written, 6 old files removed\n")
    assert len(keys(store_url, ".sites/proj/")) == 4  # the pointer and the new site
    assert served_files(store_url, "proj")["index.html"] == b"new front"


@pytest.mark.parametrize(
    ("project", "source_kind", "message"),
    [
        ("..", "dir", "invalid project name"),
        ("a/b", "dir", "invalid project name"),
        ("a" * 256, "dir", "invalid project name"),
        ("proj", "missing", "no such directory or zip file"),
        ("proj", "notzip", "not a zip archive"),
        ("proj", "evilzip", "refusing unsafe file name"),
        ("proj", "empty", "no files to upload"),
    ],
)
def test_upload_errors_are_one_line(
    tmp_path: Path, project: str, source_kind: str, message: str
) -> None:
    store = f"file://{tmp_path}/docs"
    source = tmp_path / "source"
    if source_kind == "dir":
        write_tree(source, {"index.html": b"x"})
    elif source_kind == "notzip":
        source.write_bytes(b"not a zip")
    elif source_kind == "evilzip":
        with zipfile.ZipFile(source, "w") as archive:
            archive.writestr("../escape.html", b"x")
    elif source_kind == "empty":
        source.mkdir()
    code, output = cli("docs", "upload", "--store", store, project, str(source))
    assert code == 1
    assert message in output
    assert len(output.strip().splitlines()) == 1
    assert keys(store) == []


def test_redirect_edits(tmp_path: Path, conveyor: ConveyorFactory) -> None:
    store = f"file://{tmp_path}/docs"
    assert cli("docs", "redirect", "--store", store, "proj", "https://proj.example")[0] == 0
    assert cli(
        "docs", "redirect", "--store", store, "--include-path", "two", "https://two.example/en"
    ) == (0, "two: redirect set, takes effect within 3 s\n")
    assert cli("docs", "redirect", "--store", store, "proj", "https://proj.example") == (
        0,
        "proj: unchanged\n",
    )
    table = parse_redirects(asyncio.run(open_store(store).get_bytes(REDIRECTS_KEY))).table
    assert table["proj"].base_uri == "https://proj.example"
    assert not table["proj"].include_path
    assert table["two"].include_path
    with conveyor(docs=store) as base:
        assert httpx.get(base + "/two/a/b.html").headers["location"] == (
            "https://two.example/en/a/b.html"
        )
    assert cli("docs", "redirect", "--store", store, "--remove", "proj") == (
        0,
        "proj: redirect removed, takes effect within 3 s\n",
    )
    assert cli("docs", "redirect", "--store", store, "--remove", "proj") == (
        0,
        "proj: unchanged\n",
    )
    table = parse_redirects(asyncio.run(open_store(store).get_bytes(REDIRECTS_KEY))).table
    assert list(table) == ["two"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["proj"], "give either BASE_URI or --remove"),
        (["--remove", "proj", "https://x.example"], "give either BASE_URI or --remove"),
        (["proj", "ftp://x.example"], "base URI must be an http(s) URL"),
        (["../x", "https://x.example"], "invalid project name"),
        (["a" * 256, "https://x.example"], "invalid project name"),
    ],
)
def test_redirect_errors(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = cli("docs", "redirect", "--store", f"file://{tmp_path}/docs", *args)
    assert code != 0
    assert message in output


def test_redirect_refuses_to_edit_a_malformed_table(tmp_path: Path) -> None:
    store = f"file://{tmp_path}/docs"
    asyncio.run(open_store(store).put(REDIRECTS_KEY, b"garbage\n"))
    code, output = cli("docs", "redirect", "--store", store, "proj", "https://x.example")
    assert code == 1
    assert "redirects.txt is malformed" in output
    assert asyncio.run(open_store(store).get_bytes(REDIRECTS_KEY)) == b"garbage\n"


def test_sample_site(tmp_path: Path, conveyor: ConveyorFactory) -> None:
    store_url = f"file://{tmp_path}/docs"
    store = open_store(store_url)
    assert asyncio.run(ensure_sample_docs(store)) is True
    assert asyncio.run(ensure_sample_docs(store)) is False
    with conveyor(docs=store_url) as base:
        assert "hello-pythonhosted" in httpx.get(base + "/").text
        assert httpx.get(base + "/hello-pythonhosted/guide").status_code == 301
        assert httpx.get(base + "/hello-pythonhosted/guide/").status_code == 200
        assert httpx.get(base + "/_static/site.css").status_code == 200
        assert httpx.get(base + "/hello-elsewhere/").status_code == 302


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "nowhere"], "bind address must be HOST:PORT"),
        (["--json-api", "ftp://x"], "--json-api must be an http(s) URL"),
        (["--docs", "nope://x"], "unsupported store URL"),
    ],
)
def test_serve_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = cli("conveyor", "serve", "--docs", f"file://{tmp_path}/docs", *args)
    assert code == 2
    assert message in output
