"""One instance per address: a second server on a served port fails at once, in one line.

granian's own sockets set SO_REUSEPORT, which let a second ``files serve`` start and take half
of the traffic. Workers of one instance still share their port.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.processes import PYTHONHOSTED, started


def _files_serve(tmp_path: Path, bind: Bind, *extra: str) -> list[str]:
    store = f"file://{tmp_path}/files"
    return [*PYTHONHOSTED, "files", "serve", "--primary", store, "--bind", str(bind), *extra]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHOSTED_CAMO_KEY": "test-key"}
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_instance_on_a_served_port_exits_2_in_one_line(
    tmp_path: Path, workers: str
) -> None:
    bind = Bind("127.0.0.1", free_port())
    with started(_files_serve(tmp_path, bind, "--workers", workers), cwd=tmp_path):
        wait_for_port(bind, timeout=60)
        second = _run(_files_serve(tmp_path, bind), tmp_path)
        assert second.returncode == 2
        assert second.stderr.splitlines() == [f"Error: {bind} is already in use"]
        # Everything still reaches the first instance (and all of its workers).
        statuses = {httpx.get(f"{bind.url()}/_health").status_code for _ in range(20)}
        assert statuses == {200}


@pytest.mark.parametrize(
    "service",
    [
        ["index", "serve", "--primary", "file:files"],
        ["conveyor", "serve", "--docs", "file:docs"],
        ["camo", "serve"],
        ["linehaul", "serve"],
        ["stats-web", "serve"],
    ],
)
def test_every_service_refuses_a_port_held_by_anything(tmp_path: Path, service: list[str]) -> None:
    with socket.socket() as other:  # any process at all, with or without SO_REUSEPORT
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        bind = Bind("127.0.0.1", other.getsockname()[1])
        result = _run([*PYTHONHOSTED, *service, "--bind", str(bind)], tmp_path)
    assert (result.returncode, result.stderr.splitlines()) == (
        2,
        [f"Error: {bind} is already in use"],
    )


def test_serve_claims_every_address_before_starting_anything(tmp_path: Path) -> None:
    binds = {name: Bind("127.0.0.1", free_port()) for name in ("files", "conveyor", "camo")}
    env = {f"PYTHONHOSTED_{name.upper()}__BIND": str(bind) for name, bind in binds.items()}
    env["PYTHONHOSTED_LINEHAUL__BIND"] = f"127.0.0.1:{free_port()}"
    env["PYTHONHOSTED_STATS_WEB__BIND"] = f"127.0.0.1:{free_port()}"
    with socket.socket() as taken:
        taken.bind((binds["camo"].host, binds["camo"].port))
        taken.listen()
        result = subprocess.run(
            [*PYTHONHOSTED, "serve", "--data-dir", str(tmp_path / "var")],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=120,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"Error: {binds['camo']} is already in use"]
    assert "pythonhosted serving from" not in result.stdout  # no banner: nothing served
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{binds['files'].url()}/_health")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("192.0.2.1:8000", "cannot listen on 192.0.2.1:8000: no such address on this machine"),
        ("[::ffff:192.0.2.1]:8000", "no such address on this machine"),
    ],
)
def test_an_address_that_cannot_be_bound_is_one_line(
    tmp_path: Path, address: str, reason: str
) -> None:
    result = _run(_files_serve(tmp_path, Bind.parse(address)), tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ") and line.endswith(reason)


@pytest.mark.parametrize(
    ("argv", "env", "line"),
    [
        (
            ["serve", "--data-dir", "{blocker}/var"],
            {},
            "Error: cannot write to {blocker}/var (data_dir): Not a directory",
        ),
        (
            ["files", "serve", "--primary", "file:files", "--logs", "file:logs"],
            {"PYTHONHOSTED_FILES__LOG_SPOOL_DIR": "{blocker}/spool"},
            "Error: cannot write to {blocker}/spool/downloads (files.log_spool_dir): "
            "Not a directory",
        ),
        (
            ["index", "serve", "--primary", "file:files", "--logs", "file:logs"],
            {"PYTHONHOSTED_DATA_DIR": "/proc/no-such-dir"},
            "Error: cannot write to /proc/no-such-dir/spool/simple (data_dir): "
            "No such file or directory",
        ),
    ],
)
def test_an_unwritable_data_dir_or_spool_is_one_line(
    tmp_path: Path, argv: list[str], env: dict[str, str], line: str
) -> None:
    """As root, permissions never stop a write: a file in the way, or /proc, still does."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bind = ["--bind", f"127.0.0.1:{free_port()}"] if argv[0] != "serve" else []
    result = subprocess.run(
        [*PYTHONHOSTED, *(arg.format(blocker=blocker) for arg in argv), *bind],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **{k: v.format(blocker=blocker) for k, v in env.items()}},
        timeout=60,
    )
    assert (result.returncode, result.stderr.splitlines()) == (2, [line.format(blocker=blocker)])


@pytest.mark.parametrize(("configured", "level"), [(False, "INFO"), (True, "WARNING")])
def test_connections_lowered_to_the_open_file_limit_warn_only_when_asked_for(
    tmp_path: Path, configured: bool, level: str
) -> None:
    """The default bound, lowered to what the open-file limit allows, is information (``serve``
    lowers it on every start); a bound the operator set and cannot have is a warning."""
    bind = Bind("127.0.0.1", free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONHOSTED_")}
    env["PYTHONHOSTED_DATA_DIR"] = str(tmp_path / "var")
    if configured:
        env["PYTHONHOSTED_HTTP__MAX_CONNECTIONS"] = "16384"
    limited = ["bash", "-c", 'ulimit -n 1024 && exec "$@"', "edge", *_files_serve(tmp_path, bind)]
    with started(limited, env=env, cwd=tmp_path, stderr=subprocess.PIPE) as process:
        wait_for_port(bind, timeout=60, process=process)
        process.terminate()
        _, errors = process.communicate(timeout=60)
    lowered = (
        f"{level} pythonhosted.web.listener: http.max_connections lowered from 16384 to what"
        f" the open-file limit (1024) allows: 768 on {bind}"
    )
    assert [line[24:] for line in errors.decode().splitlines() if "lowered" in line] == [lowered]
