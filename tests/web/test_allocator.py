"""The files edge and camo serve with Python's objects on the C library's allocator (the
command re-executes itself with ``PYTHONMALLOC=malloc`` before it claims its address), unless
the operator's environment names an allocator; the other services keep Python's own."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.processes import PYTHONHOSTED, started


def allocator_of(pid: int) -> str | None:
    """``PYTHONMALLOC`` as the process's current program image was started with."""
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        name, _, value = entry.partition(b"=")
        if name == b"PYTHONMALLOC":
            return value.decode()
    return None


def serve(tmp_path: Path, service: str, given: str | None) -> str | None:
    """Start ``service``'s server as a command (one process), ask its health, and return the
    allocator its serving image was started with."""
    bind = Bind("127.0.0.1", free_port())
    argv = {
        "files": ["files", "serve", "--primary", f"file://{tmp_path}/store"],
        "camo": ["camo", "serve", "--key", "test-key"],
        "conveyor": ["conveyor", "serve", "--docs", f"file://{tmp_path}/store"],
    }[service]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    env["PYTHONHOSTED_DATA_DIR"] = str(tmp_path / "data")
    if given is not None:
        env["PYTHONMALLOC"] = given
    command = [*PYTHONHOSTED, *argv, "--bind", f"{bind.host}:{bind.port}"]
    with started(command, env=env, cwd=tmp_path) as process:
        wait_for_port(bind, timeout=60, process=process)
        assert httpx.get(f"{bind.url()}/_health", timeout=30).status_code == 200
        return allocator_of(process.pid)  # the same process, its image replaced


@pytest.mark.parametrize("service", ["files", "camo"])
def test_the_crowds_servers_run_on_the_c_allocator(tmp_path: Path, service: str) -> None:
    assert serve(tmp_path, service, None) == "malloc"


def test_the_operators_allocator_wins(tmp_path: Path) -> None:
    assert serve(tmp_path, "files", "pymalloc") == "pymalloc"


def test_other_servers_keep_pythons_allocator(tmp_path: Path) -> None:
    assert serve(tmp_path, "conveyor", None) is None


def test_the_command_in_process_never_replaces_its_caller(tmp_path: Path) -> None:
    """A caller of the commands in-process (here click's runner, as tests use it) is not the
    command's own process: it is never re-executed (an invalid bind, found after the point
    where the command would be, is refused in this interpreter)."""
    from click.testing import CliRunner

    from pythonhosted.cli import main

    before = os.environ.get("PYTHONMALLOC")
    result = CliRunner().invoke(main, ["files", "serve", "--bind", "nowhere"])
    assert result.exit_code == 2
    assert os.environ.get("PYTHONMALLOC") == before
