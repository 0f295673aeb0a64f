"""The security headers every public response carries (the CDN's set, files-edge and conveyor).

``HSTS`` only goes on responses to TLS requests; ``NO_CROSS_DOMAIN`` is added where each
service's spec asks for it.
"""

from __future__ import annotations

from pythonhosted.web.types import Headers

SECURITY: Headers = [
    (b"x-frame-options", b"deny"),
    (b"x-xss-protection", b"1; mode=block"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-robots-header", b"noindex"),
]
NO_CROSS_DOMAIN = (b"x-permitted-cross-domain-policies", b"none")
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains; preload")
