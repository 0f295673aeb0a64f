"""What any command lets through is one line on stderr and an exit status, never a traceback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pythonhosted.cli import SERVICE_COMMANDS, SERVICE_SUMMARIES, main
from pythonhosted.samples import build_sdist

PYTHONHOSTED = [sys.executable, "-m", "pythonhosted"]


def run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, command: list[str] = PYTHONHOSTED
) -> tuple[int, str]:
    done = subprocess.run(
        [*command, *args],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stderr


# The CLI with a bug planted in ``stats``: its warehouse URL raises ZeroDivisionError.
# (A 20-digit --days overflowed a date, unforeseen, until --days was bounded.)
PLANTED = [
    sys.executable,
    "-c",
    "import pythonhosted.warehouse.cli as stats; stats.warehouse_url = lambda settings: 1 / 0; "
    "from pythonhosted.cli import run; run()",
]


def test_an_unforeseen_error_is_one_line(tmp_path: Path) -> None:
    """An error no command foresaw: a traceback, before. The traceback is at DEBUG."""
    code, stderr = run(tmp_path, "stats", "demo", command=PLANTED)
    assert (code, stderr) == (
        1,
        "Error: ZeroDivisionError: division by zero "
        "(PYTHONHOSTED_LOG_LEVEL=DEBUG logs the traceback)\n",
    )
    _, debug = run(
        tmp_path, "stats", "demo", command=PLANTED, env={"PYTHONHOSTED_LOG_LEVEL": "DEBUG"}
    )
    assert "Traceback (most recent call last)" in debug


def test_names_no_store_can_hold_are_refused_in_one_line(tmp_path: Path) -> None:
    """A project name with a newline and a filename too long for a store key used to reach
    the store, whose refusal (a ValueError) was a traceback; upload stored the file before
    its ``.metadata`` failed."""
    store = f"file://{tmp_path}/store"
    newline = run(tmp_path, "files", "unyank", "a\nb-1.0.tar.gz", "--store", store)
    assert newline == (1, "error: 'a\\nb-1.0.tar.gz': 'a\\nb' is not a project name\n")
    name = "a" * 240
    filename, data = build_sdist(name, "1.0")
    (tmp_path / filename).write_bytes(data)
    long = run(tmp_path, "files", "upload", "--store", store, filename)
    assert long == (
        1,
        f"error: {filename[:60]}...: longer than 241 bytes (with '.metadata.json' it must "
        "fit the 255 bytes of a store key's name)\n",
    )
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.gz"))
    deleted = run(tmp_path, "files", "delete", filename, "--yes", "--store", store)
    assert deleted[0] == 1 and deleted[1].count("\n") == 1 and "Traceback" not in deleted[1]


def test_the_command_list_gives_each_service_its_own_summary() -> None:
    """``--help`` lists the services by SERVICE_SUMMARIES, not by their commands' docstrings:
    what it shows is what the commands themselves would show, at any width."""
    context = click.Context(main)
    assert set(SERVICE_SUMMARIES) == set(SERVICE_COMMANDS)
    for name, summary in SERVICE_SUMMARIES.items():
        command = main.get_command(context, name)
        assert command is not None
        for limit in (20, 45, 80, 400):
            stand_in = click.Command(name, help=summary)
            assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), name


def test_help_imports_no_service() -> None:
    """Listing the commands imports none of them (each service's libraries: 0.3 s of CPU)."""
    listing = (
        "import sys; from pythonhosted.cli import SERVICE_COMMANDS, main;"
        "main(['--help'], standalone_mode=False);"
        "targets = {target.split(':')[0] for target in SERVICE_COMMANDS.values()};"
        "print(sorted(targets & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", listing], capture_output=True, text=True, timeout=60, check=True
    )
    *shown, imported = done.stdout.splitlines()
    assert "  files      The files edge (files.pythonhosted.org), and managing what..." in shown
    assert imported == "[]"


def _fifo(tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "fifo")
    return str(tmp_path / "fifo")


@pytest.mark.timeout(60)  # the FIFO and the long value held the old code for minutes
@pytest.mark.parametrize(
    ("args", "status", "line"),
    [
        (["--config", "{tmp}"], 2, "Invalid value for '--config': File '{tmp}' is a directory."),
        (["--config", "{fifo}", "config"], 2, "config file {fifo}: not a regular file"),
        (
            ["--config", "x" * 100_000, "config"],
            2,
            f"cannot read config file {'x' * 100_000}: File name too long",
        ),
        (["--nope"], 2, "No such option '--nope'."),
        (
            ["stats", "--top", str(2**64)],
            2,
            f"Invalid value for '--top': {2**64} is not in the range 1<=x<=1000000000.",
        ),
        (
            ["files", "delete", "--yes", "--store", "", "a==1"],
            2,
            "Invalid value for '--store': is empty (leave the option out for its default)",
        ),
        (
            ["linehaul", "export", "--to", " "],
            2,
            "Invalid value for '--to': is empty (leave the option out for its default)",
        ),
        (
            ["docs", "redirect", "--store", "memory://", "demo", "https://example.org/"],
            2,
            "Invalid value for '--store': memory:// lasts as long as this command: what it "
            "writes would be lost",
        ),
        (
            ["docs", "redirect", "--store", "file://", "demo", "https://example.org/"],
            2,
            "file store URL must be file:///path, got 'file://'",
        ),
        (
            ["docs", "upload", "--store", "file://{tmp}/docs", "demo", ""],
            2,
            "Invalid value for 'SOURCE': is empty (leave it out, or name a path)",
        ),
        (
            ["serve", "--data-dir", " "],
            2,
            "Invalid value for '--data-dir': is empty (leave it out, or name a path)",
        ),
        (
            ["camo", "serve", "--cache-dir", ""],
            2,
            "Invalid value for '--cache-dir': is empty (leave it out, or name a path)",
        ),
        (
            ["files", "upload", "--store", "file://{tmp}/files", ""],
            2,
            "Invalid value for 'PATHS...': is empty (leave it out, or name a path)",
        ),
        (
            ["--config", "", "config"],
            2,
            "Invalid value for '--config': is empty (leave it out, or name a path)",
        ),
    ],
)
def test_hostile_values_are_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], status: int, line: str
) -> None:
    """Values bench/probe_cli.py found getting more than one line, or none: click's usage
    banner for the group's own flags, a config FIFO that blocked, a 100 kB value whose error
    line took minutes to redact, and an empty store URL taken for the default store (where
    ``files delete --yes`` deleted) or ``file://`` for the working directory; an empty path
    taken for the working directory (``docs upload`` published it, ``serve`` kept its data
    and keys there)."""
    monkeypatch.chdir(tmp_path)
    fill = {"{tmp}": str(tmp_path), "{fifo}": _fifo(tmp_path)}
    for placeholder, value in fill.items():
        args = [arg.replace(placeholder, value) for arg in args]
        line = line.replace(placeholder, value)
    result = CliRunner().invoke(main, args, env={"PYTHONHOSTED_DATA_DIR": str(tmp_path / "v")})
    assert (result.exit_code, result.stderr) == (status, f"Error: {line}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]  # nothing made


@pytest.mark.parametrize(
    ("shell", "status", "stderr"),
    [
        ("config >&-", 1, "Error: [Errno 9] Bad file descriptor\n"),
        ("--version >&-", 1, "Error: stdout: Bad file descriptor\n"),
        ("--help >/dev/full", 1, "Error: stdout: No space left on device\n"),
    ],
)
def test_output_that_cannot_be_written_is_one_line(
    tmp_path: Path, shell: str, status: int, stderr: str
) -> None:
    """A closed stdout (``>&-``) was ``sys.stdout`` of None: a traceback at the final flush;
    ``--help`` or ``--version`` to a full disk a traceback from click. Now one line and
    status 1, as coreutils say "write error"."""
    command = " ".join(PYTHONHOSTED)
    done = subprocess.run(
        f"{command} {shell}",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (status, stderr)


def test_a_warehouse_nothing_answers_is_one_line(tmp_path: Path) -> None:
    """clickhouse-connect and urllib3 logged two warnings above the error they then raised:
    three lines for one failure."""
    with socket.socket() as unlistened:  # bound, not listening: every connection refused
        unlistened.bind(("127.0.0.1", 0))
        port = unlistened.getsockname()[1]
        url = f"clickhouse://127.0.0.1:{port}/db"
        result = CliRunner().invoke(
            main, ["linehaul", "export", "--warehouse", url, "--to", f"file://{tmp_path}/x"]
        )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot open clickhouse://***@127.0.0.1:{port}/db: ")
    assert result.stderr.count("\n") == 1


# The CLI with a thread planted in ``stats`` that dies of an exception, then an object whose
# ``__del__`` raises: errors Python itself prints, tracebacks no command can catch.
STRAY = [
    sys.executable,
    "-c",
    "import threading, pythonhosted.warehouse.cli as stats\n"
    "class Finalizer:\n"
    "    def __del__(self): raise KeyError('gone')\n"
    "def planted(settings):\n"
    "    thread = threading.Thread(target=lambda: 1 / 0, name='loader'); thread.start()\n"
    "    thread.join(); Finalizer(); raise SystemExit(3)\n"
    "stats.warehouse_url = planted\n"
    "from pythonhosted.cli import run; run()",
]


def test_errors_in_threads_and_finalizers_are_one_line_each(tmp_path: Path) -> None:
    """``Exception in thread`` and ``Exception ignored in`` were tracebacks printed straight
    to stderr, past the command's error handling; now each is one log record."""
    code, stderr = run(tmp_path, "stats", "demo", command=STRAY)
    lines = [line.split(" ", 2)[-1] for line in stderr.splitlines()]  # without the time
    assert (code, len(lines)) == (3, 2)
    assert lines[0] == "ERROR pythonhosted.stray: loader ended: ZeroDivisionError: division by zero"
    ignored = r"Exception ignored in <function Finalizer.__del__ at 0x[0-9a-f]+>"
    assert re.fullmatch(f"ERROR pythonhosted.stray: {ignored}: KeyError: 'gone'", lines[1])
