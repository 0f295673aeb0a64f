"""The CLI and settings: key sources, flags over settings, a real ``camo serve`` process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from click.testing import CliRunner

from pythonhosted.camo import load_or_create_key, sign_url
from pythonhosted.cli import main
from pythonhosted.config import load_settings
from pythonhosted.web.server import Bind, free_port, wait_for_port

if TYPE_CHECKING:
    from conftest import Upstream

TARGET = "https://example.com/logo.png"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PYTHONHOSTED_CONFIG", "PYTHONHOSTED_CAMO_KEY", "PYTHONHOSTED_CAMO__KEY"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_sign_with_issue_key_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHOSTED_CAMO_KEY", "test-key")
    assert invoke("camo", "sign", TARGET) == (0, sign_url(TARGET, b"test-key") + "\n")
    code, output = invoke("camo", "sign", "--base64", "--base", "https://camo.example", TARGET)
    assert (code, output) == (
        0,
        "https://camo.example/qkheRcoafXP57C-13c35UGh8h-4/aHR0cHM6Ly9leGFtcGxlLmNvbS9sb2dvLnBuZw\n",
    )


def test_sign_with_nested_env_and_key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTHONHOSTED_CAMO__KEY", "test-key")
    assert invoke("camo", "sign", TARGET)[1] == sign_url(TARGET, b"test-key") + "\n"
    key_file = tmp_path / "camo.key"
    key_file.write_text("file-key\n")
    assert invoke("camo", "sign", "--key-file", str(key_file), TARGET)[1] == (
        sign_url(TARGET, b"file-key") + "\n"
    )


def test_no_key_is_a_clear_error() -> None:
    code, output = invoke("camo", "sign", TARGET)
    assert code == 1
    assert "no camo key: set PYTHONHOSTED_CAMO_KEY" in output


def test_key_masked_in_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHOSTED_CAMO_KEY", "hunter2")
    code, output = invoke("config")
    assert code == 0
    assert "hunter2" not in output
    assert '"key": "**********"' in output


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHOSTED_CAMO__TIMEOUT", "1m30s")
    monkeypatch.setenv("PYTHONHOSTED_CAMO__ALLOW_NETWORKS", '["127.0.0.2/32"]')
    monkeypatch.setenv("PYTHONHOSTED_CAMO__HEADERS", '{"Strict-Transport-Security": "max-age=1"}')
    camo = load_settings().camo
    assert camo.timeout == 90.0
    assert [str(net) for net in camo.allow_networks] == ["127.0.0.2/32"]
    assert camo.headers == {"Strict-Transport-Security": "max-age=1"}
    assert camo.bind == "127.0.0.1:8002"
    assert camo.max_size_kb == 5120
    assert camo.max_redirects == 3


def test_load_or_create_key(tmp_path: Path) -> None:
    path = tmp_path / "data" / "camo.key"
    key = load_or_create_key(path)
    assert len(key) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["camo.key"]


def test_serve_process(upstream: Upstream, tmp_path: Path) -> None:
    bind = Bind("127.0.0.1", free_port())
    command = [
        str(Path(sys.executable).parent / "pythonhosted"),
        "camo",
        "serve",
        f"--bind=127.0.0.1:{bind.port}",
        "--allow-network=127.0.0.2/32",
        "--timeout=2s",
        "--max-size=64",
        "--server-name=camo-cli",
        "-H",
        "Strict-Transport-Security: max-age=60",
    ]
    env = {"PYTHONHOSTED_CAMO_KEY": "cli-key", "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        wait_for_port(bind)
        response = httpx.get(bind.url() + sign_url(upstream.base + "/png", b"cli-key"))
        assert response.status_code == 200
        assert response.content == upstream.png
        assert response.headers["server"] == "camo-cli"
        assert response.headers["strict-transport-security"] == "max-age=60"
        assert httpx.get(bind.url() + "/healthcheck").status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0  # graceful stop, no abort at interpreter exit
    assert b"cli-key" not in stderr


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (granian's worker processes), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_serve_workers(upstream: Upstream, tmp_path: Path) -> None:
    """``--workers 2``: two worker processes, each rebuilding the flags' settings from the
    environment; a ``--key-file`` flag beats a key in the environment there too."""
    key_file = tmp_path / "camo.key"
    key_file.write_text("file-key\n")
    bind = Bind("127.0.0.1", free_port())
    command = [
        str(Path(sys.executable).parent / "pythonhosted"),
        "camo",
        "serve",
        f"--bind=127.0.0.1:{bind.port}",
        "--workers=2",
        f"--key-file={key_file}",
        "--allow-network=127.0.0.2/32",
        "--max-size=64",
        "--server-name=camo-workers",
        "-H",
        "Strict-Transport-Security: max-age=60",
    ]
    env = {"PYTHONHOSTED_CAMO__KEY": "env-key", "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        wait_for_port(bind)
        deadline = time.monotonic() + 20
        while len(_children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_children(process.pid)) == 2
        good = bind.url() + sign_url(upstream.base + "/png", b"file-key")
        for _ in range(8):  # a new connection each time, so both workers get some
            response = httpx.get(good)
            assert response.status_code == 200
            assert response.content == upstream.png
            assert response.headers["server"] == "camo-workers"
            assert response.headers["strict-transport-security"] == "max-age=60"
        assert (
            httpx.get(bind.url() + sign_url(upstream.base + "/png", b"env-key")).status_code == 404
        )
        chunked = sign_url(upstream.base + "/chunked?chunks=80&size=1024", b"file-key")
        with pytest.raises(httpx.HTTPError):
            httpx.get(bind.url() + chunked)  # over --max-size=64: cut off mid-body
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert b"file-key" not in stderr
