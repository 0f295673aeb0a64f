"""camo: the HMAC-signed image proxy for project descriptions, and the HTML filter feeding it.

Public surface: :func:`create_app` (the ASGI app), :func:`sign_url` and :func:`camoify` (for
Warehouse-like callers).
"""

from pythonhosted.camo.app import create_app
from pythonhosted.camo.rewrite import Camoified, NestedTooDeep, camoify
from pythonhosted.camo.signatures import sign_url

__all__ = ["Camoified", "NestedTooDeep", "camoify", "create_app", "sign_url"]
