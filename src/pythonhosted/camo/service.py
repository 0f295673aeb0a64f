"""Build camo from settings, as ``camo serve`` and each of its workers run it."""

from __future__ import annotations

from pythonhosted.camo.app import CamoApp, create_app
from pythonhosted.config import Settings, load_worker_settings
from pythonhosted.logsetup import configure_logging


def build_app(settings: Settings) -> CamoApp:
    """The proxy for ``settings.camo``; ValueError if there is no key or the rules are bad."""
    return create_app(settings.camo, access_log=settings.http.access_log)


def worker_app() -> CamoApp:
    """Entry point of each ``camo serve --workers N`` process: settings from the environment.

    Each worker has its own upstream connection pool, caches and metrics.
    """
    settings = load_worker_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    return build_app(settings)
