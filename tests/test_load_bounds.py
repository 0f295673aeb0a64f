"""The tests' longer request-path bounds (support.bounds) reach what the tests start, replace
only defaults, and leave the code's declared defaults as documented."""

from __future__ import annotations

import json
import subprocess

from pythonhosted.config import ConveyorSettings, FilesSettings, Settings
from pythonhosted.storage import open_store
from support import bounds
from support.processes import PYTHONHOSTED


def test_sections_made_here_get_the_bounds_where_none_are_given() -> None:
    files = FilesSettings(primary="file:///srv", primary_read_timeout=0.5)
    assert (files.primary_connect_timeout, files.primary_read_timeout) == (bounds.CONNECT, 0.5)
    assert ConveyorSettings().upstream_timeout == bounds.READ
    assert Settings().files.archive_read_timeout == bounds.READ  # from the environment
    assert FilesSettings.model_fields["primary_read_timeout"].default == 2.0


def test_stores_opened_without_bounds_get_the_tests_bounds() -> None:
    assert open_store("memory://bounds").first_byte_timeout == bounds.CONNECT + bounds.READ


def test_a_command_the_tests_start_reads_the_bounds() -> None:
    shown = subprocess.run([*PYTHONHOSTED, "config"], capture_output=True, check=True)
    assert json.loads(shown.stdout)["conveyor"]["store_connect_timeout"] == bounds.CONNECT
