"""Ports for servers the tests and benches start, and waiting for them to listen."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pythonhosted.web.listener import Bind
from pythonhosted.web.ports import REMEMBERED, free_port, wait_for_port
from support.processes import started


def test_a_process_never_draws_a_port_twice_before_its_server_could_bind_it() -> None:
    """``serve`` lost its start in CI when one of its five ports was drawn again before it
    bound it. Drawn at random from ~22,000 ports, 2,000 draws repeat one almost surely."""
    drawn = [free_port() for _ in range(REMEMBERED)]
    assert len(set(drawn)) == len(drawn)


def test_processes_side_by_side_draw_from_their_own_slices() -> None:
    """pytest-xdist's workers each draw from their own slice, so two never race one port."""
    program = (
        "import sys; from pythonhosted.web.ports import draw_from_slice, free_port; "
        "draw_from_slice(int(sys.argv[1]), 2); print(*(free_port() for _ in range(1000)))"
    )
    drawn = [
        set(
            subprocess.run(
                [sys.executable, "-c", program, str(index)],
                capture_output=True,
                check=True,
                text=True,
            ).stdout.split()
        )
        for index in (0, 1)
    ]
    assert (len(drawn[0]), len(drawn[1]), drawn[0] & drawn[1]) == (1000, 1000, set())
    assert max(map(int, drawn[0])) < min(map(int, drawn[1]))


def test_a_slice_that_does_not_exist_is_refused() -> None:
    program = "from pythonhosted.web.ports import draw_from_slice; draw_from_slice(2, 2)"
    ran = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert ran.stderr.splitlines()[-1] == "ValueError: slice 2 of 2 does not exist"


def test_a_server_that_dies_at_start_fails_the_wait_at_once_with_its_last_words() -> None:
    """Not "nothing listening after 60 s" with the reason left unread in its stderr pipe."""
    bind = Bind("127.0.0.1", free_port())
    env = {**os.environ, "PYTHONHOSTED_HTTP__HEADER_TIMEOUT": "abc"}
    command = [sys.executable, "-m", "pythonhosted", "files", "serve", "--bind", str(bind)]
    with (
        started(command, env=env, stderr=subprocess.PIPE) as process,
        pytest.raises(RuntimeError) as failed,
    ):
        wait_for_port(bind, timeout=600, process=process)
    assert str(failed.value) == (
        f"the process that was to listen on {bind.url()} exited with 2 first; its stderr ends:\n"
        "Error: http.header_timeout (environment variable PYTHONHOSTED_HTTP__HEADER_TIMEOUT): "
        "input should be a valid number, unable to parse string as a number, got 'abc'"
    )
