"""Several ASGI apps behind one listening address, chosen by path prefix."""

from __future__ import annotations

from collections.abc import Sequence

from pythonhosted.web.lifespan import fan_out_lifespan
from pythonhosted.web.types import ASGIApp, Receive, Scope, Send


class PrefixRouter:
    """``routes`` are (prefix, app) pairs tried in order; anything else goes to ``default``.

    A prefix matches the path itself and everything below it (``/simple`` matches ``/simple``
    and ``/simple/x`` but not ``/simplex``). Apps see the full, unmodified path.
    """

    def __init__(self, routes: Sequence[tuple[str, ASGIApp]], default: ASGIApp) -> None:
        self.routes = [(prefix.rstrip("/"), app) for prefix, app in routes]
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            apps = [app for _, app in self.routes] + [self.default]
            await fan_out_lifespan(apps, scope, receive, send)
            return
        path: str = scope.get("path", "")
        for prefix, app in self.routes:
            if path == prefix or path.startswith(prefix + "/"):
                await app(scope, receive, send)
                return
        await self.default(scope, receive, send)
