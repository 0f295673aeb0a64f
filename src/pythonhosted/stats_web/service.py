"""Build the stats web from settings, as ``stats-web serve`` and each of its workers run it."""

from __future__ import annotations

from pythonhosted.config import Settings, load_worker_settings
from pythonhosted.logsetup import configure_logging
from pythonhosted.stats_web.app import StatsWebApp
from pythonhosted.warehouse import engine


def build_app(settings: Settings) -> StatsWebApp:
    engine.configure(settings.duckdb)
    return StatsWebApp(settings)


def worker_app() -> StatsWebApp:
    """Entry point of each ``stats-web serve --workers N`` process: settings from the
    environment."""
    settings = load_worker_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    return build_app(settings)
