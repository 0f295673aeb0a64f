"""Several ASGI apps behind one listening address, chosen by path prefix."""

from __future__ import annotations

from collections.abc import Sequence

from pythonhosted.web.h1.quick import Quick, QuickAnswer
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
        # The default app's quick answers (pythonhosted.web.h1), for the paths it gets: under
        # ``serve`` the files edge shares its address with the index.
        self._default_quick: Quick | None = getattr(default, "quick", None)
        self._raw_prefixes = [prefix.encode() for prefix, _ in self.routes]
        self.quick: Quick | None = self._quick if self._default_quick is not None else None

    def _quick(
        self,
        method: str,
        target: bytes,
        headers: dict[bytes, bytes],
        client: tuple[str, int] | None,
    ) -> QuickAnswer | None:
        """The default app's quick answer for a path no route takes; None for an escaped path
        (routes match decoded paths: the ASGI way decides those)."""
        assert self._default_quick is not None
        if b"%" in target:
            return None
        for prefix in self._raw_prefixes:
            if target == prefix or target.startswith(prefix + b"/"):
                return None
        return self._default_quick(method, target, headers, client)

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
