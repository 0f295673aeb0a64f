"""Local directories and the secrets serve generates into its data dir."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pythonhosted.localdirs import load_or_create_secret, read_secret
from pythonhosted.web.server import free_port
from support.processes import PYTHONHOSTED, started, wait_until


def test_a_secret_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "camo.key"
    secret = load_or_create_secret(path)
    assert len(secret) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(path) == secret == read_secret(path)
    assert [p.name for p in path.parent.iterdir()] == ["camo.key"]  # no temporary left


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "purge.key"
    path.write_text("\n")
    with pytest.raises(ValueError, match="secret file is empty"):
        load_or_create_secret(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"k" * (1 << 20), "secret file is larger than 4096 bytes"),  # 1 MB: not a secret of ours
        (b"\xff\xfe\x80\n", "secret file is not UTF-8 text"),
    ],
    ids=["1 MB", "not UTF-8"],
)
def test_a_secret_file_that_is_no_secret_is_refused_naming_it(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "purge.key"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=reason) as refused:
        read_secret(path)
    assert str(refused.value).endswith(str(path))


@pytest.mark.parametrize("key", ["purge.key", "camo.key"])
def test_serve_with_a_fifo_for_a_secret_file_exits_2_in_one_line(tmp_path: Path, key: str) -> None:
    """Read whole, a FIFO nobody writes to held ``serve`` at its start for ever."""
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / key)
    ports = {name: free_port() for name in ("FILES", "CONVEYOR", "CAMO", "LINEHAUL", "STATS_WEB")}
    binds = {f"PYTHONHOSTED_{name}__BIND": f"127.0.0.1:{p}" for name, p in ports.items()}
    env = {**os.environ, **binds}
    argv = [*PYTHONHOSTED, "serve", "--data-dir", str(data)]
    with started(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE) as run:
        wait_until(lambda: run.poll() is not None)
        assert run.returncode == 2
        assert run.stderr is not None
        lines = run.stderr.read().decode().splitlines()
    assert lines == [f"Error: secret file is empty: {data / key}"]
