"""The CLI and settings: key sources, flags over settings, a real ``camo serve`` process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from click.testing import CliRunner

from pythonhosted import __version__
from pythonhosted.camo import sign_url
from pythonhosted.cli import main
from pythonhosted.config import load_settings
from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.processes import child_pids, finish_group, spawn, wait_until

if TYPE_CHECKING:
    from conftest import Upstream

TARGET = "https://example.com/logo.png"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PYTHONHOSTED_CONFIG", "PYTHONHOSTED_CAMO_KEY", "PYTHONHOSTED_CAMO__KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in [name for name in os.environ if name.startswith("GOCAMO_")]:
        monkeypatch.delenv(name)


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
    """A configuration error: status 2 (it was 1, as a failure's)."""
    code, output = invoke("camo", "sign", TARGET)
    assert code == 2
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


def test_serve_process(upstream: Upstream, tmp_path: Path) -> None:
    bind = Bind("127.0.0.1", free_port())
    command = [
        str(Path(sys.executable).parent / "pythonhosted"),
        "camo",
        "serve",
        f"--bind=127.0.0.1:{bind.port}",
        "--allow-network=127.0.0.2/32",
        "--timeout=30s",  # fetches from this process's upstream, which a loaded machine starves
        "--max-size=64",
        "--server-name=camo-cli",
        "-H",
        "Strict-Transport-Security: max-age=60",
    ]
    env = {"PYTHONHOSTED_CAMO_KEY": "cli-key", "PATH": "/usr/bin:/bin"}
    process = spawn(command, env=env, stderr=subprocess.PIPE)
    try:
        wait_for_port(bind, timeout=60, process=process)
        response = httpx.get(bind.url() + sign_url(upstream.base + "/png", b"cli-key"))
        assert response.status_code == 200
        assert response.content == upstream.png
        assert response.headers["server"] == "camo-cli"
        assert response.headers["strict-transport-security"] == "max-age=60"
        assert httpx.get(bind.url() + "/healthcheck").status_code == 200
    finally:
        _, stderr = finish_group(process)
    assert process.returncode == 0  # graceful stop, no abort at interpreter exit
    assert b"cli-key" not in stderr


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
    process = spawn(command, env=env, stderr=subprocess.PIPE)
    try:
        wait_for_port(bind, timeout=60, process=process)
        wait_until(lambda: len(child_pids(process.pid)) == 2)
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
        _, stderr = finish_group(process)
    assert b"file-key" not in stderr


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("javascript:alert(1)", "not an absolute http(s) URL"),
        ("/relative.png", "not an absolute http(s) URL"),
        ("http://10.0.0.1/a.png", "address 10.0.0.1 is in refused range 10.0.0.0/8"),
        ("http://localhost/a.png", "host 'localhost' is local"),
        ("http://a..b/a.png", "host 'a..b' is not a valid DNS name"),
        ("http://[::1/a.png", "not a valid URL"),
    ],
)
def test_sign_refuses_what_camo_refuses(
    monkeypatch: pytest.MonkeyPatch, url: str, reason: str
) -> None:
    monkeypatch.setenv("PYTHONHOSTED_CAMO_KEY", "test-key")
    result = CliRunner().invoke(main, ["camo", "sign", url])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: camo would refuse {url!r}: {reason}\n"


def test_sign_never_shows_the_credentials_it_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refused URL is shown, without the password it carried (a secret, on a terminal or
    in a CI log)."""
    monkeypatch.setenv("PYTHONHOSTED_CAMO_KEY", "test-key")
    result = CliRunner().invoke(main, ["camo", "sign", "http://user:hunter2@example.com/a.png"])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: camo would refuse 'http://***@example.com/a.png': "
        "URLs with credentials are not allowed\n"
    )


def test_sign_follows_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTHONHOSTED_CAMO_KEY", "test-key")
    url = "http://user:pw@example.com/a.png"
    monkeypatch.setenv("PYTHONHOSTED_CAMO__ALLOW_CREDENTIAL_URLS", "true")
    assert invoke("camo", "sign", url) == (0, sign_url(url, b"test-key") + "\n")
    rules = tmp_path / "rules.txt"
    rules.write_text("deny|s|example.com||\n")
    monkeypatch.setenv("PYTHONHOSTED_CAMO__FILTER_RULESET", str(rules))
    code, output = invoke("camo", "sign", url)
    assert code == 2
    assert output.endswith("example.com/a.png matches deny rule deny|s|example.com||\n")


def test_sign_takes_go_camo_key_flag_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("camo", "sign", "-k", "k1", TARGET) == (0, sign_url(TARGET, b"k1") + "\n")
    monkeypatch.setenv("GOCAMO_HMAC", "k2")
    assert invoke("camo", "sign", TARGET) == (0, sign_url(TARGET, b"k2") + "\n")


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--ssl-listen=:8443", "--ssl-listen: terminate TLS in front of camo"),
        ("--ssl-cert=c.pem", "--ssl-cert: terminate TLS in front of camo"),
        ("--ssl-key=k.pem", "--ssl-key: terminate TLS in front of camo"),
        ("--quic", "--quic: camo speaks HTTP/1.1; terminate HTTP/3 in front of it"),
        ("--socket-listen=/tmp/camo.sock", "--socket-listen: camo listens on TCP only (--bind)"),
    ],
)
def test_go_camo_flags_camo_cannot_honour(
    monkeypatch: pytest.MonkeyPatch, flag: str, message: str
) -> None:
    monkeypatch.setenv("PYTHONHOSTED_CAMO_KEY", "test-key")
    result = CliRunner().invoke(main, ["camo", "serve", flag])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: not supported: {message}")
    assert result.stderr.count("\n") == 1


def test_version_flag() -> None:
    assert invoke("camo", "serve", "-V") == (0, f"pythonhosted camo {__version__}\n")


def test_go_camo_command_line(upstream: Upstream, tmp_path: Path) -> None:
    """go-camo's flags and GOCAMO_* variables, unchanged, on `camo serve` (two workers, so
    every value also travels to the worker processes)."""
    rules = tmp_path / "rules.txt"
    rules.write_text("deny||*||/svg\n")
    bind = Bind("127.0.0.1", free_port())
    command = [
        str(Path(sys.executable).parent / "pythonhosted"),
        "camo",
        "serve",
        f"--listen=127.0.0.1:{bind.port}",
        "--workers=2",
        "-k",
        "go-key",
        "--max-size=16",
        "--max-size-redirect=http://example.com/too-big.png",
        "--server-name=gc",
        "--expose-server-version",
        "--no-fk",
        "--xfwd4",
        "--automaxprocs",
        "--readtimeout=10s",
        "--log-json",
        "--no-metrics",
        "-H",
        "X-Extra: 1",
        "--allow-network=127.0.0.2/32",
        f"--cache-dir={tmp_path / 'cache'}",
        "--cache-max-bytes=1000000",
    ]
    env = {
        "GOCAMO_FILTER_RULESET": str(rules),
        "GOCAMO_USER_AGENT": "gc-agent",
        "PATH": "/usr/bin:/bin",
    }
    process = spawn(command, env=env, stderr=subprocess.PIPE)
    try:
        wait_for_port(bind, timeout=60, process=process)
        sign = lambda path: bind.url() + sign_url(upstream.base + path, b"go-key")  # noqa: E731
        response = httpx.get(sign("/echo"), headers={"X-Forwarded-For": "2.2.2.2"})
        assert response.status_code == 200
        assert response.headers["server"] == f"gc {__version__}"
        assert response.headers["x-extra"] == "1"
        assert response.headers["connection"] == "close"
        seen = json.loads(response.content)
        assert (seen["via"], seen["user-agent"], seen["x-forwarded-for"]) == (
            "gc",
            "gc-agent",
            "2.2.2.2",
        )
        response = httpx.get(sign("/png"))  # 20 KB over --max-size=16
        assert (response.status_code, response.headers["location"]) == (
            302,
            "http://example.com/too-big.png",
        )
        response = httpx.get(sign("/svg"))
        assert response.headers["x-camo-error"] == "127.0.0.2/svg matches deny rule deny||*||/svg"
        assert httpx.get(bind.url() + "/metrics").status_code == 404
        # each worker claims a cache slot as it starts: both have started before the stop
        slots = tmp_path / "cache"
        wait_until(lambda: len([p for p in slots.iterdir() if p.is_dir()]) == 2)
    finally:
        _, stderr = finish_group(process)
    lines = stderr.decode().splitlines()
    # each worker claimed a cache slot of its own
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()) == [
        "slot-0",
        "slot-1",
    ]
    assert "note: --automaxprocs has no effect: camo sizes itself with --workers" in lines
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(entry["msg"] == "camo refused: 127.0.0.2/svg matches deny rule deny||*||/svg"
               for entry in logged)  # fmt: skip
    assert b"go-key" not in stderr


@pytest.mark.timeout(60)  # the FIFO blocked the old code forever
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["sign", "--key-file", "{big}", TARGET],
            "camo key file is larger than 65536 bytes: {big}",
        ),
        (["sign", "--key-file", "{fifo}", TARGET], "camo key file is empty: {fifo}"),
        (["serve", "-k", "k", "--bind", "x"], "bind address must be HOST:PORT, got 'x'"),
    ],
)
def test_a_key_file_that_is_no_key_is_a_configuration_error(
    tmp_path: Path, args: list[str], line: str
) -> None:
    """A key file was read whole (/dev/zero: until memory ran out), and a FIFO no one writes
    to blocked the command forever; camo's configuration errors had status 1."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"k" * 100_000)
    for name in ("fifo", "big"):
        args = [arg.replace(f"{{{name}}}", str(tmp_path / name)) for arg in args]
        line = line.replace(f"{{{name}}}", str(tmp_path / name))
    result = CliRunner().invoke(main, ["camo", *args])
    assert (result.exit_code, result.stderr) == (2, f"Error: {line}\n")


@pytest.mark.parametrize(
    ("flags", "deadline"),
    [([], 1.0), (["--readtimeout=2s"], 2.0), (["--idletimeout=3s", "--readtimeout=4s"], 3.0)],
)
def test_the_head_deadline_is_go_camos_timeout_only_when_given(
    tmp_path: Path, flags: list[str], deadline: float
) -> None:
    """Without go-camo's frontend timeouts, a connection that sends nothing is cut at
    ``http.header_timeout`` as on every server of ours; their 30 s defaults held idle
    crowds three times as long. Given, the shorter of the two applies."""
    bind = Bind("127.0.0.1", free_port())
    command = [sys.executable, "-m", "pythonhosted", "camo", "serve", "-k", "k",
               f"--listen={bind}", *flags]  # fmt: skip
    env = {**os.environ, "PYTHONHOSTED_HTTP__HEADER_TIMEOUT": "1"}
    process = spawn(command, env=env, cwd=tmp_path)
    try:
        wait_for_port(bind, timeout=60, process=process)
        with socket.create_connection((bind.host, bind.port)) as idle:
            started = time.monotonic()
            idle.settimeout(25)  # under go-camo's default 30 s, far over any deadline here
            assert idle.recv(1) == b""
            held = time.monotonic() - started
    finally:
        finish_group(process)
    # cut at the deadline, not before it; the upper bound only tells 1-4 s from 30 s
    assert deadline - 0.5 < held < 25
