"""One HTTP request as the services see it: the ASGI scope's facts pulled out once.

The service shell builds it for every request, so a service's handler never parses the headers
or decides TLS a second time (the files edge's hot path counts these microseconds).
"""

from __future__ import annotations

from pythonhosted.web.types import Headers, Receive, Scope


class Request:
    __slots__ = ("headers", "method", "path", "raw_path", "receive", "scope", "security", "tls")

    def __init__(
        self,
        scope: Scope,
        tls: bool,
        headers: dict[bytes, bytes],
        security: Headers,
        receive: Receive | None = None,
    ):
        self.scope = scope
        self.receive = receive  # the request's ASGI receive, e.g. to notice a client leaving
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers = headers
        raw = scope.get("raw_path") or self.path.encode("utf-8", "surrogateescape")
        self.raw_path: bytes = raw.split(b"?", 1)[0].split(b"#", 1)[0]
        self.tls = tls
        self.security = security  # the headers every answer to this request carries

    @property
    def head(self) -> bool:
        return self.method == "HEAD"

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else None
