"""The client side of one proxied response: headers once, then body chunks, or a refusal.

The status line and headers are held back until the first body bytes (or the end) are ready,
so anything that goes wrong before then can still become a proper refusal. A body that cannot
be finished once it has started (size limit passed, deadline hit) is aborted by raising
:class:`CutOff` out of the ASGI app: the server then drops the connection, so neither a
browser nor a cache in front can mistake the partial body for the whole image.

Once the client has hung up (its :class:`~pythonhosted.web.departure.Presence` says so: made
only for a request that works upstream or waits, so a hit pays nothing for it), nothing more
is sent: granian's ``send`` does not fail then, it drops what it is given, so
sending would only cost CPU. A body chunk then raises
:class:`~pythonhosted.web.departure.Departed`, unless others still want the body being read
(a cache fill that coalesced requests wait for).
"""

from __future__ import annotations

import asyncio

from pythonhosted.camo.errors import Refused
from pythonhosted.web.departure import Presence
from pythonhosted.web.objects import send_file
from pythonhosted.web.responses import send_text
from pythonhosted.web.shell import CutShort
from pythonhosted.web.types import Headers, Message, Receive, Send

#: a cached image's pieces while its client has not shown it reads fast (all of an image's,
#: in practice: see :func:`~pythonhosted.web.objects.send_file`)
FILE_PIECE = 16 * 1024


class CutOff(CutShort):
    """The response had started and cannot be completed; the connection must be dropped
    (the shell drops it without logging a traceback: camo logs why, within its bound)."""


class Relay:
    def __init__(self, send: Send, receive: Receive, always: Headers, *, head: bool) -> None:
        self._send = send
        self._receive = receive
        self.watched: Presence | None = None  # the client's presence, once asked for
        self._always = always
        self._head = head
        self._pending: Message | None = None
        self.started = False  # True once the status line may have reached the client
        self.body_bytes = 0
        self._ended = False
        self.tag: bytes | None = None  # X-Camo-Cache on a relayed response (MISS)

    @property
    def presence(self) -> Presence:
        """The client's presence (made on first use; watched once its ``watch`` is called)."""
        if self.watched is None:
            self.watched = Presence(self._receive)
        return self.watched

    @property
    def gone(self) -> bool:
        """Whether the client is known to have hung up."""
        return self.watched is not None and self.watched.gone

    def start(self, status: int, headers: Headers) -> None:
        if self.tag is not None:
            headers = [*headers, (b"x-camo-cache", self.tag)]
        self._pending = {
            "type": "http.response.start",
            "status": status,
            "headers": headers + self._always,
        }

    async def _flush(self) -> None:
        if self._pending is not None:
            message, self._pending = self._pending, None
            self.started = True
            await self._send(message)

    async def body(self, chunk: bytes, *, last: bool = False) -> None:
        """One chunk; awaiting the server's send is the back-pressure on the upstream read.

        ``last`` (known from Content-Length) ends the response in the same message.
        """
        if self._head or not (chunk or last):
            return
        watched = self.watched
        if watched is not None and watched.gone:
            watched.check()  # Departed, unless the body is being cached for others
            return
        await self._flush()
        self.body_bytes += len(chunk)
        self._ended = last
        await self._send({"type": "http.response.body", "body": chunk, "more_body": not last})

    async def file(self, descriptor: int, length: int) -> None:
        """The whole body from an open file's first ``length`` bytes, paced to the client as
        the files edge paces a local file (:func:`~pythonhosted.web.objects.send_file`):
        small pieces until it shows it reads fast: 300 slow readers each had ~490 KB held for
        them in the server when 64 KB messages went out as fast as granian queued them, ~150
        KB now (5,000 clients of one 1 MB image: 1.8 GB, now 430 MB). The caller watches for
        the client leaving (the task is then cancelled; the pieces let the loop turn for
        that). CutOff if the file fails."""
        if self._head:
            return
        await self._flush()
        self._ended = True
        never = asyncio.get_running_loop().create_future()  # departure cancels the task instead
        try:
            await send_file(self._send, descriptor, 0, length, never, FILE_PIECE)
        except OSError as exc:
            raise CutOff(f"cache file failed mid-body: {exc}") from None
        finally:
            never.cancel()
        self.body_bytes += length

    async def end(self) -> None:
        if not self._ended and not self.gone:
            await self._flush()
            self._ended = True
            await self._send({"type": "http.response.body", "body": b""})

    async def text(self, status: int, text: str) -> None:
        """A short plain-text answer of camo's own (not a refusal)."""
        await send_text(self._send, status, text, headers=self._always, head=self._head)

    async def redirect(self, location: bytes, reason: str) -> None:
        """A 302 to ``location`` (``--max-size-redirect``), saying why in ``X-Camo-Error``."""
        headers = [
            *self._always,
            (b"location", location),
            (b"x-camo-error", _header_text(reason)),
        ]
        await send_text(self._send, 302, "Found", headers=headers, head=self._head)

    async def refuse(self, refusal: Refused) -> None:
        """A short plain-text refusal that says why, also in ``X-Camo-Error``."""
        headers = [*self._always, (b"x-camo-error", _header_text(refusal.detail))]
        if refusal.status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        elif refusal.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="purge"'))
        elif refusal.status == 503:
            headers.append((b"retry-after", b"5"))
        await send_text(
            self._send, refusal.status, refusal.detail, headers=headers, head=self._head
        )


def _header_text(text: str) -> bytes:
    """A reason as header bytes: ASCII, anything else escaped, at most 200 bytes."""
    return text.encode("ascii", "backslashreplace")[:200]
