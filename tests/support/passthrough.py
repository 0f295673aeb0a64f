"""Forwarding one ASGI request to an upstream server (moto) and its answer back: the base of
test S3 endpoints that break, count or hold requests on their way."""

from __future__ import annotations

import httpx

from pythonhosted.web.types import Receive, Scope, Send

UPSTREAM_TIMEOUT = 60.0


async def forward(upstream: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Send the request in ``scope`` to ``upstream`` as it came and answer with its response."""
    pieces = []
    while True:
        message = await receive()
        pieces.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(pieces)  # a part of several MB comes in many messages: joined once
    query = scope["query_string"].decode()
    url = upstream + scope["path"] + ("?" + query if query else "")
    # moto answers a multipart upload's abort or a part in seconds on a loaded machine: httpx's
    # 5 s default failed the abort there, and the upload it should have ended stayed listed.
    async with httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT) as client:
        answer = await client.request(scope["method"], url, headers=scope["headers"], content=body)
    out = [(k, v) for k, v in answer.headers.raw if k.lower() != b"transfer-encoding"]
    await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
    await send({"type": "http.response.body", "body": answer.content})
