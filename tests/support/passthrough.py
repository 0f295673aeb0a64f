"""Forwarding one ASGI request to an upstream server (moto) and its answer back: the base of
test S3 endpoints that break, count or hold requests on their way."""

from __future__ import annotations

import httpx

from pythonhosted.web.types import Receive, Scope, Send


async def forward(upstream: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Send the request in ``scope`` to ``upstream`` as it came and answer with its response."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    query = scope["query_string"].decode()
    url = upstream + scope["path"] + ("?" + query if query else "")
    async with httpx.AsyncClient() as client:
        answer = await client.request(scope["method"], url, headers=scope["headers"], content=body)
    out = [(k, v) for k, v in answer.headers.raw if k.lower() != b"transfer-encoding"]
    await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
    await send({"type": "http.response.body", "body": answer.content})
