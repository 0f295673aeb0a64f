"""ASGI lifespan handling shared by the services: start and stop hooks, errors reported."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pythonhosted.web.types import Receive, Send

Hook = Callable[[], Awaitable[None]]


async def handle_lifespan(receive: Receive, send: Send, startup: Hook, shutdown: Hook) -> None:
    """Run ``startup``/``shutdown`` on the server's lifespan events (shutdown flushes buffers)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await shutdown()
            except Exception as exc:
                await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return
