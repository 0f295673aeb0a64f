"""Build linehaul from settings, as ``linehaul serve`` (both jobs) or a scaled-out worker
(one job) runs it."""

from __future__ import annotations

from collections.abc import Sequence

from pythonhosted.config import Settings
from pythonhosted.linehaul.app import LinehaulApp
from pythonhosted.linehaul.monitor import JOBS, Job


def build_app(settings: Settings, jobs: Sequence[Job] = JOBS) -> LinehaulApp:
    return LinehaulApp(settings, jobs)
