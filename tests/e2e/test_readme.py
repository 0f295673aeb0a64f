"""The README's promise, on a fresh clone: `make run`, curl the printed URLs, install with pip,
see the download in `pythonhosted stats`.

It clones the committed HEAD (uncommitted changes are not part of it, as in CI), bootstraps
the clone's own environment through `make run`, and stops the whole process group it started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.processes import spawn, wait_until
from support.stats_warehouse import NO_PREWARM
from support.venvs import pip_venv

REPO = Path(__file__).resolve().parents[2]


def _wait_for_banner(process: subprocess.Popen[str], deadline: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Range: bytes=" in line:  # the banner's last line
            return lines
    raise AssertionError("make run printed no banner:\n" + "".join(lines))


@pytest.mark.long
@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the git checkout")
def test_readme_commands_on_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    readme = (clone / "README.md").read_text()
    assert "make run" in readme and "make test" in readme

    bind = Bind("127.0.0.1", free_port())
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHONHOSTED_", "VIRTUAL_ENV"))
    }
    env["PYTHONHOSTED_FILES__BIND"] = f"{bind.host}:{bind.port}"
    env["PYTHONHOSTED_CONVEYOR__BIND"] = f"127.0.0.1:{free_port()}"
    env["PYTHONHOSTED_CAMO__BIND"] = f"127.0.0.1:{free_port()}"
    env["PYTHONHOSTED_LINEHAUL__BIND"] = f"127.0.0.1:{free_port()}"
    stats_web = Bind("127.0.0.1", free_port())
    env["PYTHONHOSTED_STATS_WEB__BIND"] = f"{stats_web.host}:{stats_web.port}"
    # One-second cycles instead of `make run`'s 10-15 s: the same path, a shorter wait.
    env["PYTHONHOSTED_FILES__LOG_PERIOD"] = "1"
    env["PYTHONHOSTED_LINEHAUL__INGEST_INTERVAL"] = "1"
    env["PYTHONHOSTED_LINEHAUL__PUBLISH_INTERVAL"] = "1"
    env.update(NO_PREWARM)
    process = spawn(
        ["make", "run"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = _wait_for_banner(process, time.monotonic() + 600)
        wait_for_port(bind, timeout=60)
        urls = [m.group(1) for line in banner if (m := re.search(r"curl -sSI (\S+)", line))]
        assert len(urls) == 2
        assert [httpx.head(url).status_code for url in urls] == [200, 200]

        venv = tmp_path / "venv"
        pip_env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        pip_env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"})
        install = subprocess.run(
            [str(pip_venv(venv)), "install", "--index-url", f"{bind.url()}/simple/",
             "hello-pythonhosted"],
            env=pip_env, capture_output=True, text=True,
        )  # fmt: skip
        assert install.returncode == 0, install.stdout + install.stderr

        stats_command = [str(clone / ".venv/bin/pythonhosted"), "stats", "hello-pythonhosted"]
        today = datetime.now(UTC).date().isoformat()  # days up to yesterday are the default
        stats_command += ["--by", "installer", "--format", "json", "--start", today, "--end", today]

        # Published once the stats web answers with a row: an HTTP request a poll, where each
        # `pythonhosted stats` is a process of ~0.5 s of CPU; the command then runs until it
        # answers (the warehouse may be locked by a publish for a moment).
        def recent_rows() -> list[dict[str, object]] | None:
            answer = httpx.get(
                f"{stats_web.url()}/api/v1/projects/hello-pythonhosted/downloads"
                f"?by=installer&start={today}&end={today}&ci=true",
                timeout=60,  # a cold answer of a loaded machine's stats web may take seconds
            )
            return answer.json()["rows"] if answer.status_code == 200 else None

        recent = wait_until(recent_rows, timeout=120, interval=0.5)
        assert [(row["installer"], row["downloads"]) for row in recent] == [("pip", 1)]

        def stats_rows() -> list[dict[str, object]] | None:
            stats = subprocess.run(
                stats_command, cwd=clone, env=env, capture_output=True, text=True
            )
            return json.loads(stats.stdout)["rows"] if stats.returncode == 0 else None

        rows = wait_until(stats_rows, timeout=120, interval=0.5)
        assert [(row["installer"], row["download_count"]) for row in rows] == [("pip", 1)]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
