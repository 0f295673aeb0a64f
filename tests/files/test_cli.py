"""`pythonhosted files upload` and `files serve` as a user runs them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.samples import build_sdist
from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.edge import SAMPLES
from support.processes import started

WHEEL = SAMPLES["wheel"]
SDIST = SAMPLES["sdist"]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "dist" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_upload_prints_one_path_per_file_and_is_idempotent(tmp_path: Path) -> None:
    wheel = _write(tmp_path, WHEEL.filename, WHEEL.data)
    sdist = _write(tmp_path, SDIST.filename, SDIST.data)
    store = f"file://{tmp_path}/store"
    runner = CliRunner()
    first = runner.invoke(main, ["files", "upload", "--store", store, str(wheel), str(sdist)])
    again = runner.invoke(main, ["files", "upload", "--store", store, str(wheel)])
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [WHEEL.path, SDIST.path]
    assert (again.exit_code, again.output) == (0, WHEEL.path + "\n")
    stored = tmp_path / "store" / WHEEL.key
    assert stored.read_bytes() == WHEEL.data
    assert (tmp_path / "store" / (WHEEL.key + ".metadata")).read_bytes().startswith(b"Metadata")


def test_upload_refusals_are_one_line_each(tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store"
    runner = CliRunner()
    runner.invoke(
        main,
        ["files", "upload", "--store", store, str(_write(tmp_path, SDIST.filename, SDIST.data))],
    )
    # A valid sdist of the same name and version, but not the same bytes.
    other_sdist = build_sdist("demo-pkg", "1.0", requires=["other"])[1]
    impostor = _write(tmp_path / "other", SDIST.filename, other_sdist)
    exe = _write(tmp_path, "tool-1.0.exe", b"MZ")
    broken = _write(tmp_path, "broken-1.0-py3-none-any.whl", b"not a zip")
    result = runner.invoke(
        main,
        ["files", "upload", "--store", store, str(impostor), str(exe), str(broken),
         str(tmp_path / "missing-1.0.tar.gz")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"error: {SDIST.filename}: a different file with this name already exists",
        "error: tool-1.0.exe: not a wheel (.whl) or sdist (.tar.gz, .zip)",
        "error: broken-1.0-py3-none-any.whl: not a valid zip archive (File is not a zip file)",
        f"error: {tmp_path / 'missing-1.0.tar.gz'}: No such file or directory",
    ]


def test_upload_bad_store_url(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["files", "upload", "--store", "ftp://x", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: unsupported store URL 'ftp://x' (use file://, memory://, s3:// or gs://)"
    )


def test_serve_routes_legacy_urls_to_conveyor(tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store"
    sdist = _write(tmp_path, SDIST.filename, SDIST.data)
    assert (
        CliRunner().invoke(main, ["files", "upload", "--store", store, str(sdist)]).exit_code == 0
    )
    bind = Bind("127.0.0.1", free_port())
    env = {**os.environ, "PYTHONHOSTED_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "pythonhosted", "files", "serve", "--primary", store]
    with started([*command, "--bind", f"{bind.host}:{bind.port}"], env=env):
        wait_for_port(bind, timeout=60)
        legacy = httpx.get(f"{bind.url()}/packages/source/d/demo-pkg/demo_pkg-1.0.tar.gz")
        wrong_bucket = httpx.get(f"{bind.url()}/packages/source/x/demo-pkg/demo_pkg-1.0.tar.gz")
    assert (legacy.status_code, legacy.headers["location"]) == (302, SDIST.path)
    assert wrong_bucket.status_code == 404
    assert wrong_bucket.headers["reason"] == "Incorrect project bucket"
