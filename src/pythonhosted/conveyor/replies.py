"""What every conveyor response shares: security headers (spec rule 16) and plain replies."""

from __future__ import annotations

from pythonhosted.web.responses import send_text
from pythonhosted.web.security import HSTS, NO_CROSS_DOMAIN, SECURITY
from pythonhosted.web.types import Headers, Scope, Send

PLAIN: Headers = [*SECURITY, NO_CROSS_DOMAIN]
TLS: Headers = [*PLAIN, HSTS]
# Rule 16: a 5xx must not stick in caches once the cause is gone.
NO_STORE = (b"cache-control", b"no-store")


def security_headers(scope: Scope) -> Headers:
    """The security set for this request (HSTS only when it came over TLS)."""
    return TLS if scope.get("scheme") == "https" else PLAIN


async def reply(
    send: Send,
    scope: Scope,
    status: int,
    text: str,
    extra: Headers | None = None,
) -> None:
    """A short plain-text answer with the security headers; no body for HEAD."""
    headers = [*security_headers(scope), *(extra or [])]
    if status >= 500:
        headers.append(NO_STORE)
    await send_text(send, status, text, headers=headers, head=scope.get("method") == "HEAD")
