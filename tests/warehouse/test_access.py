"""Readers and writers of one DuckDB warehouse file across processes: the intent file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.warehouse import access
from pythonhosted.warehouse.access import intent_file
from support.locks import lock_holder


def _coverage(url: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["stats", "--coverage", "--warehouse", url, "--start", "2021-01-08", "--end",
               "2021-01-08"],
    )  # fmt: skip
    return result.exit_code, result.output


def test_a_killed_writers_intent_naming_a_reused_pid_keeps_no_reader_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer killed mid-publish leaves its intent file. After a reboot or a container
    restart its PID names some other living process, and every reader waited out its 10 s
    and failed ("being written; try again shortly") until the next publish. The lock says
    whether the writer lives: a file nobody holds is ignored, one held is waited for."""
    path = tmp_path / "w.duckdb"
    url = f"duckdb://{path}"
    results = f"file://{tmp_path}/results"
    (tmp_path / "results").mkdir()
    published = CliRunner().invoke(
        main, ["linehaul", "publish", "--once", "--results", results, "--warehouse", url]
    )
    assert published.exit_code == 0, published.output
    answer = (1, f"Error: the warehouse at {path} has loaded no log batches yet\n")
    intent_file(path).write_text(str(os.getppid()))  # alive, and not a writer
    assert _coverage(url) == answer
    published = CliRunner().invoke(  # a writer takes the stale file over, and removes it
        main, ["linehaul", "publish", "--once", "--results", results, "--warehouse", url]
    )
    assert published.exit_code == 0, published.output
    assert not intent_file(path).exists()
    writer = lock_holder(intent_file(path), write_pid=True)  # a writer in another process
    monkeypatch.setattr(access, "LOCK_WAIT", 1.0)  # how long a second writer waits (10 s)
    refused = CliRunner().invoke(
        main, ["linehaul", "publish", "--once", "--results", results, "--warehouse", url]
    )
    assert (refused.exit_code, refused.output) == (
        1, f"Error: cannot open warehouse {path}: another process writes it\n"
    )  # fmt: skip
    writer.kill()
    writer.wait()
    assert _coverage(url) == answer  # its lock went with it
