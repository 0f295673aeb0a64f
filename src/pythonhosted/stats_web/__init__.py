"""The stats web: download statistics for people, badges and scripts, over the warehouse.

A JSON API compatible with pypistats.org (so its clients and shields.io's badges work when
pointed here) plus our own routes, SVG and shields.io-endpoint badges, and server-rendered
dashboard pages, all answered from the warehouse's daily rollups. Spec:
``spec/stats-web.md``; use: docs/stats-web.md.
"""

from pythonhosted.stats_web.app import StatsWebApp
from pythonhosted.stats_web.service import build_app

__all__ = ["StatsWebApp", "build_app"]
