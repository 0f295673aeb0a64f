"""ASGI lifespan handling shared by the services: start and stop hooks, errors reported."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from pythonhosted.web.types import ASGIApp, Message, Receive, Scope, Send

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


class Child:
    """One app's lifespan conversation, driven from the parent's."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task = asyncio.ensure_future(app(scope, self.inbox.get, self.outbox.put))

    async def event(self, kind: str) -> Message:
        await self.inbox.put({"type": f"lifespan.{kind}"})
        getter = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait([getter, self.task], return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        # An app that returns without answering does not support lifespan: nothing to run.
        return {"type": f"lifespan.{kind}.complete"}


async def fan_out_lifespan(
    apps: Sequence[ASGIApp], scope: Scope, receive: Receive, send: Send
) -> None:
    """Run the lifespan of every app mounted under one server (startup in order, shutdown
    in reverse), reporting the first failure to the server."""
    children: list[Child] = []
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            for app in apps:
                child = Child(app, scope)
                children.append(child)
                answer = await child.event("startup")
                if answer["type"].endswith("failed"):
                    await send(answer)
                    return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            failure = None
            for child in reversed(children):
                answer = await child.event("shutdown")
                failure = failure or (answer if answer["type"].endswith("failed") else None)
            await asyncio.gather(*(child.task for child in children), return_exceptions=True)
            await send(failure or {"type": "lifespan.shutdown.complete"})
            return
