"""Apps behind one address by path prefix; the default app's quick answers go through (the
files edge behind ``serve``'s address, which it shares with the index)."""

from __future__ import annotations

import httpx

from pythonhosted.web.h1.quick import QuickAnswer
from pythonhosted.web.router import PrefixRouter
from pythonhosted.web.server import running
from pythonhosted.web.types import Receive, Scope, Send


class Named:
    """Answers ``{name} {path}`` over ASGI; the quick one answers ``quick {path}``."""

    def __init__(self, name: str, quick: bool = False) -> None:
        self.name = name
        if quick:
            self.quick = self._quick

    def _quick(
        self,
        method: str,
        target: bytes,
        headers: dict[bytes, bytes],
        client: tuple[str, int] | None,
    ) -> QuickAnswer | None:
        body = b"quick " + target
        return QuickAnswer(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n" % len(body), body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = f"{self.name} {scope['path']}".encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def test_the_default_apps_quick_answers_go_through_and_routes_keep_their_paths() -> None:
    router = PrefixRouter([("/simple", Named("index"))], default=Named("edge", quick=True))
    with running(router) as url:
        answers = {
            path: httpx.get(url + path).text
            for path in ("/packages/a", "/simple", "/simple/x/", "/simplex", "/%73imple/")
        }
    assert answers == {
        "/packages/a": "quick /packages/a",
        "/simple": "index /simple",
        "/simple/x/": "index /simple/x/",
        "/simplex": "quick /simplex",
        "/%73imple/": "index /simple/",  # escaped: decided the ASGI way, on the decoded path
    }


def test_a_router_without_a_quick_default_has_none() -> None:
    router = PrefixRouter([("/simple", Named("index", quick=True))], default=Named("edge"))
    assert router.quick is None
