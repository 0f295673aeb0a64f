"""An S3 endpoint that answers 500 InternalError to PUTs, as S3 now and then does: moto behind
a proxy, the failures before moto sees the request (nothing written) or after it stored it (the
write landed; only the answer was lost)."""

from __future__ import annotations

from collections import Counter

from pythonhosted.web.types import Message, Receive, Scope, Send
from support.passthrough import forward

INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


class FailingPuts:
    """moto behind a proxy answering 500 InternalError to the first ``failures`` PUTs of each
    object; ``landed``: moto stores each of them first."""

    def __init__(self, upstream: str, *, landed: bool, failures: int = 1) -> None:
        self.upstream, self.landed, self.failures = upstream, landed, failures
        self.puts: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "PUT":
            await forward(self.upstream, scope, receive, send)
            return
        self.puts[scope["path"]] += 1
        if self.puts[scope["path"]] > self.failures:
            await forward(self.upstream, scope, receive, send)
            return
        if self.landed:
            await forward(self.upstream, scope, receive, _dropped)
        else:
            while (await receive()).get("more_body"):
                pass
        headers = [(b"content-type", b"application/xml")]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": INTERNAL_ERROR})


async def _dropped(message: Message) -> None:
    """Where an answer that is lost on its way goes."""


def through(proxy: str, s3_url: str) -> str:
    """``s3_url``'s bucket, reached through the proxy at ``proxy``."""
    bucket = s3_url.split("?", 1)[0]
    return f"{bucket}?endpoint={proxy}&allow_http=true"
