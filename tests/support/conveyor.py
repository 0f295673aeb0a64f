"""Conveyor test helpers shared by the fixtures and the tests."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

# ``with conveyor(**conveyor_settings) as base_url``
ConveyorFactory = Callable[..., AbstractContextManager[str]]
