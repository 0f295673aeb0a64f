"""Under ``--log-json`` every line a command or server writes to stderr is one JSON object.

A server's banner and a job's summary went to stderr as plain lines among the JSON records,
and a log shipper that parses each line as JSON choked on them; for people they stay as
they were.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from pythonhosted.web.server import Bind, free_port
from support.processes import started, wait_until

PYTHONHOSTED = [sys.executable, "-m", "pythonhosted"]
SUMMARY = "linehaul parse: 0 rows, 0 ignored, 0 unprocessable"


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHONHOSTED_")}


def _records(text: str) -> list[dict[str, object]]:
    records = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(record, dict) for record in records)
    return records


def test_a_commands_summary_is_a_json_record_or_its_plain_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    command = [*PYTHONHOSTED, "linehaul", "parse", str(empty)]
    as_json = subprocess.run(
        [*PYTHONHOSTED, "--log-json", *command[3:]],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    plain = subprocess.run(command, env=_environment(), capture_output=True, text=True, timeout=120)

    assert [(r["level"], r["logger"], r["msg"]) for r in _records(as_json.stderr)] == [
        ("info", "pythonhosted.cli", SUMMARY)
    ]
    assert (plain.returncode, plain.stderr) == (0, SUMMARY + "\n")


def test_a_servers_banner_is_a_json_record(tmp_path: Path) -> None:
    bind = Bind("127.0.0.1", free_port())
    err = tmp_path / "stderr"
    env = {**_environment(), "PYTHONHOSTED_LOG_JSON": "true"}
    primary = f"file://{tmp_path / 'files'}"
    command = [*PYTHONHOSTED, "index", "serve", "--primary", primary, "--bind", str(bind)]
    with err.open("wb") as stderr, started(command, env=env, stderr=stderr) as process:
        wait_until(lambda: "simple index on" in err.read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0

    records = _records(err.read_text())
    assert {
        "logger": "pythonhosted.cli",
        "msg": f"simple index on {bind.url()}/simple/",
    }.items() <= (next(r for r in records if r["logger"] == "pythonhosted.cli").items())


def test_an_error_that_ends_a_command_is_a_json_record_or_its_plain_line() -> None:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PYTHONHOSTED, *args],
            env={**_environment(), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    no_primary = "no primary store: pass --primary URL or set PYTHONHOSTED_FILES__PRIMARY"
    bad_setting = "environment variable PYTHONHOSTED_FILES__NOPE: no such setting"
    flagged = run("--log-json", "files", "serve")
    from_environment = run(
        "files", "serve", PYTHONHOSTED_LOG_JSON="yes", PYTHONHOSTED_FILES__NOPE="1"
    )
    plain = run("files", "serve")

    assert flagged.returncode == 2
    assert [(r["level"], r["logger"], r["msg"]) for r in _records(flagged.stderr)] == [
        ("error", "pythonhosted.cli", no_primary)
    ]
    assert from_environment.returncode == 2
    [record] = _records(from_environment.stderr)
    assert (record["level"], str(record["msg"]).startswith(bad_setting)) == ("error", True)
    assert (plain.returncode, plain.stderr) == (2, f"Error: {no_primary}\n")
