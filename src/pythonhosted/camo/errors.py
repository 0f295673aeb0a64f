"""A refusal: why camo will not serve a request, for the client, the metrics and the author."""

from __future__ import annotations


class Refused(Exception):
    """Raised anywhere on the request path; the app answers ``status`` with ``detail`` in
    ``X-Camo-Error`` and counts ``reason`` (a short, fixed code safe as a metrics label)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
