"""Fixtures for conveyor: a fake JSON API on loopback and a live conveyor over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pythonhosted.config import ConveyorSettings, FilesSettings, Settings
from pythonhosted.conveyor import build_app
from pythonhosted.web.server import running
from support.conveyor import ConveyorFactory
from support.jsonapi import FakeJsonApi


@pytest.fixture
def api() -> Iterator[tuple[FakeJsonApi, str]]:
    """The fake JSON API and its base URL."""
    fake = FakeJsonApi()
    with running(fake) as url:
        yield fake, url


@pytest.fixture
def conveyor(tmp_path: Path) -> ConveyorFactory:
    """``with conveyor(json_api=…, docs=…, **conveyor_settings) as base_url``.

    The docs store defaults to an empty local directory; ``primary`` sets the files section's
    primary store (the own index's default).
    """

    @contextmanager
    def start(primary: str = "", **section: Any) -> Iterator[str]:
        section.setdefault("docs", f"file://{tmp_path}/docs")
        settings = Settings(
            data_dir=tmp_path / "data",
            files=FilesSettings(primary=primary),
            conveyor=ConveyorSettings(**section),
        )
        with running(build_app(settings)) as url:
            yield url

    return start
