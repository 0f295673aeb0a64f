"""Conveyor: legacy ``/packages/{py}/{l}/{name}/{file}`` redirects and pythonhosted.org docs.

The public surface other parts use: ``build_app(settings)`` (the whole service),
``build_resolver`` and ``create_legacy_app`` (legacy redirects alone, for the files edge),
``ensure_sample_docs`` (for ``pythonhosted serve``) and ``docs_url`` (the docs store in use).
"""

from pythonhosted.conveyor.app import ConveyorApp
from pythonhosted.conveyor.legacy import LegacyApp
from pythonhosted.conveyor.metrics import ConveyorMetrics
from pythonhosted.conveyor.samples import ensure_sample_docs
from pythonhosted.conveyor.service import build_app, build_resolver, create_legacy_app, docs_url

__all__ = [
    "ConveyorApp",
    "ConveyorMetrics",
    "LegacyApp",
    "build_app",
    "build_resolver",
    "create_legacy_app",
    "docs_url",
    "ensure_sample_docs",
]
