"""Legacy ``/packages/{python_version}/{project_l}/{project_name}/{filename}`` redirects.

Spec rules 1-6 as a plain ASGI app: the files edge mounts it for non-hashed ``/packages/``
paths, and the conveyor service routes ``/packages`` to it. It speaks only GET and HEAD
(OPTIONS, which the edge forwards, gets 405).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from pythonhosted.boundedlog import failure_log
from pythonhosted.conveyor.replies import reply, security_headers
from pythonhosted.conveyor.resolver import Resolver, UpstreamStatus
from pythonhosted.conveyor.sources import UpstreamUnavailable
from pythonhosted.web.lifespan import handle_lifespan
from pythonhosted.web.responses import send_response
from pythonhosted.web.types import Headers, Receive, Scope, Send

log = logging.getLogger(__name__)

CACHE_WEEK = (b"cache-control", b"max-age=604800, public")
ALLOW = (b"allow", b"GET, HEAD")
# Everything RFC 3986 allows unescaped in a URL: Location must be ASCII, but not re-escaped.
URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


class LegacyApp:
    """ASGI app answering legacy package URLs from a :class:`Resolver`."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.metrics = resolver.metrics
        self._failures = failure_log(log, "legacy lookup")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send, _nothing, self.resolver.close)
            return
        if scope["type"] != "http":
            return
        status = await self.answer(scope, send)
        self.metrics.tallies.by_part["legacy", status] += 1

    async def answer(self, scope: Scope, send: Send) -> int:
        """Send the response; return its status (for the caller's metrics)."""
        if scope["method"] not in ("GET", "HEAD"):
            await reply(send, scope, 405, "Method not allowed", [ALLOW])
            return 405
        parts = scope["path"].split("/")
        # ["", "packages", python_version, project_l, project_name, filename]
        if len(parts) != 6 or parts[1] != "packages" or not all(parts[2:]):
            await reply(send, scope, 404, "Not Found")
            return 404
        python_version, bucket, project, filename = parts[2:]
        if bucket not in (project[0], project[0].lower()):
            await reply(
                send, scope, 404, "Incorrect project bucket", [_reason("Incorrect project bucket")]
            )
            return 404
        signature = filename.endswith(".asc")
        if signature:
            filename = filename[:-4]
        try:
            files = await self.resolver.resolve(project)
        except UpstreamStatus as exc:
            await reply(send, scope, exc.status, f"Upstream answered {exc.status}")
            return exc.status
        except UpstreamUnavailable as exc:
            self._failures.note(
                logging.WARNING, "unavailable", "legacy lookup of %s failed: %s", project, exc
            )
            await reply(send, scope, 503, "Package index unavailable")
            return 503
        found = files.find(python_version, filename)
        if found is None:
            await reply(send, scope, 404, "no file found", [_reason("no file found")])
            return 404
        if signature and not found.has_sig:
            missing = "missing signature file"
            await reply(send, scope, 404, missing, [_reason(missing)])
            return 404
        location = found.url + ".asc" if signature else found.url
        headers: Headers = [
            *security_headers(scope),
            (b"location", quote(location, safe=URL_SAFE).encode("ascii")),
            CACHE_WEEK,
        ]
        await send_response(send, 302, headers=headers, head=scope["method"] == "HEAD")
        return 302


def _reason(text: str) -> tuple[bytes, bytes]:
    return (b"reason", text.encode())


async def _nothing() -> None:
    return None
