"""A fake package JSON API (Warehouse's ``/pypi/{project}/json`` shape) for conveyor tests.

An ASGI app the tests serve on loopback with ``running``; it records every request, answers
ETag revalidations with 304, and can be told to fail, stall or answer a fixed status.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from pythonhosted.web.types import Receive, Scope, Send

FILES_HOST = "https://files.example"


def file_entry(filename: str, python_version: str, has_sig: bool = False) -> dict[str, Any]:
    return {
        "filename": filename,
        "python_version": python_version,
        "url": f"{FILES_HOST}/packages/ab/cd/{filename}",
        "has_sig": has_sig,
        "packagetype": "sdist" if python_version == "source" else "bdist_wheel",
    }


@dataclass
class FakeJsonApi:
    """``projects`` maps the name in the URL to its ``releases``, ``raw`` to a whole answer's
    bytes (sent as given: big or broken ones); ``status`` overrides answers."""

    projects: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    stall: dict[str, float] = field(default_factory=dict)
    cache_control: str | None = "max-age=900, public"
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, project: str) -> int:
        with self._lock:
            return sum(1 for path, _ in self.requests if path == f"/pypi/{project}/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        headers = dict(scope["headers"])
        match = headers.get(b"if-none-match")
        with self._lock:
            self.requests.append((path, match.decode() if match else None))
        parts = path.split("/")
        name = parts[2] if len(parts) == 4 and parts[1] == "pypi" else ""
        if name in self.stall:
            await asyncio.sleep(self.stall[name])
        status = self.status.get(name)
        if status is None and name not in self.projects and name not in self.raw:
            status = 404
        if status is not None:
            await self._send(send, status, b'{"message": "nope"}', None)
            return
        if name in self.raw:
            body = self.raw[name]
        else:
            releases = self.projects[name]
            body = orjson.dumps({"info": {"name": name}, "releases": releases, "urls": []})
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if match is not None and match.decode() == etag:
            await self._send(send, 304, b"", etag)
            return
        await self._send(send, 200, body, etag)

    async def _send(self, send: Send, status: int, body: bytes, etag: str | None) -> None:
        headers = [(b"content-type", b"application/json")]
        if self.cache_control is not None:
            headers.append((b"cache-control", self.cache_control.encode()))
        if etag is not None:
            headers.append((b"etag", etag.encode()))
        if status != 304:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
