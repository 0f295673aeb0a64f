"""An S3 endpoint that fails requests as S3 now and then does: moto behind a proxy that
answers 500 InternalError to the first requests of one method for each object, before moto
sees them (nothing written) or after moto answered (a write landed; only its answer was
lost), or holds them unanswered (a store that hangs)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Literal

from pythonhosted.web.types import Message, Receive, Scope, Send
from support.passthrough import forward

INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)

HANG = 5.0
"""Seconds a hanging store holds a request: past the tests' short read timeouts, and short
enough for the proxy's stop to wait for."""

Failure = Literal["refused", "landed", "hangs"]


class FailingS3:
    """moto behind a proxy failing the first ``failures`` ``method`` requests of each object
    (``failure``: answered 500 unseen, answered 500 after moto's answer, never answered);
    ``seen`` counts each object's ``method`` requests by path. ``method``: one, or several
    separated by spaces ("GET HEAD": every read, as a store that hangs hangs them all)."""

    def __init__(self, upstream: str, method: str, failure: Failure, *, failures: int = 1) -> None:
        self.upstream, self.methods = upstream, frozenset(method.split())
        self.failure, self.failures = failure, failures
        self.seen: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in self.methods or scope["query_string"]:  # not listings, parts
            await forward(self.upstream, scope, receive, send)
            return
        self.seen[scope["path"]] += 1
        if self.seen[scope["path"]] > self.failures:
            await forward(self.upstream, scope, receive, send)
            return
        if self.failure == "landed":
            await forward(self.upstream, scope, receive, _dropped)
        else:
            while (await receive()).get("more_body"):
                pass
        if self.failure == "hangs":
            await asyncio.sleep(HANG)  # past the client's timeout; the answer finds it gone
        headers = [(b"content-type", b"application/xml")]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": INTERNAL_ERROR})


async def _dropped(message: Message) -> None:
    """Where an answer that is lost on its way goes."""


def through(proxy: str, s3_url: str) -> str:
    """``s3_url``'s bucket, reached through the proxy at ``proxy``."""
    bucket = s3_url.split("?", 1)[0]
    return f"{bucket}?endpoint={proxy}&allow_http=true"


def object_path(s3_url: str, key: str) -> str:
    """The path of ``key``'s requests on the S3 endpoint (path-style: the bucket first), as
    :attr:`FailingS3.seen` counts them."""
    return f"/{s3_url.split('?')[0].removeprefix('s3://')}/{key}"
