"""The service shell every service runs in, over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pythonhosted.logsetup import JsonFormatter
from pythonhosted.web.clientfacts import ClientFacts
from pythonhosted.web.metrics import ServiceRegistry
from pythonhosted.web.request import Request
from pythonhosted.web.security import NO_CROSS_DOMAIN
from pythonhosted.web.server import running
from pythonhosted.web.shell import Service
from pythonhosted.web.types import Receive, Send
from support.flood import fetch_all
from support.metrics import sample
from support.processes import wait_until

SECURITY_NAMES = {"x-frame-options", "x-xss-protection", "x-content-type-options"}
RELEASE = threading.Event()  # what a request to /wait waits for


async def handler(request: Request, receive: Receive, send: Send) -> None:
    if request.path == "/boom":
        raise RuntimeError("secret detail")
    if request.path in ("/head", "/half"):
        length = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        if request.path == "/half":
            await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        raise RuntimeError("after the head")
    if request.path == "/wait":
        await asyncio.to_thread(RELEASE.wait)
    await Service.text(send, request, 200, f"{request.method} {request.path}")


def service(**options: object) -> Service:
    return Service("demo", handler, ServiceRegistry("demo"), **options)  # type: ignore[arg-type]


def test_health_aliases_and_problems() -> None:
    problems: list[str] = []
    app = service(health=lambda: problems, health_aliases=("/healthcheck",))
    with running(app) as url:
        assert [httpx.get(url + path).text for path in ("/_health", "/healthcheck")] == ["OK\n"] * 2
        problems += ["ingest pass failed: disk full", "publish pass failed: locked"]
        unhealthy = httpx.get(url + "/_health")
        head = httpx.head(url + "/healthcheck")
        posted = httpx.post(url + "/_health")
    assert (unhealthy.status_code, unhealthy.text) == (
        503,
        "ingest pass failed: disk full\npublish pass failed: locked\n",
    )
    assert (head.status_code, head.content) == (503, b"")
    assert (posted.status_code, posted.headers["allow"]) == (405, "GET, HEAD")


def test_every_answer_carries_security_headers_and_is_counted() -> None:
    app = service(methods=("GET", "HEAD"), extra_headers=[NO_CROSS_DOMAIN])
    with running(app) as url:
        answers = [
            httpx.get(url + "/page"),
            httpx.delete(url + "/page"),
            httpx.get(url + "/boom"),
            httpx.get(url + "/_health"),
            httpx.get(url + "/metrics"),
        ]
        counted = [sample(url, "demo_requests_total", status=status) for status in ("405", "500")]
    assert [answer.status_code for answer in answers] == [200, 405, 500, 200, 200]
    for answer in answers:
        assert answer.headers.keys() >= SECURITY_NAMES
        assert answer.headers["x-permitted-cross-domain-policies"] == "none"
        assert "strict-transport-security" not in answer.headers
    assert answers[1].headers["allow"] == "GET, HEAD"
    assert answers[2].text == "Internal error\n"  # nothing of the exception reaches the client
    assert counted == [1, 1]


def test_status_counts_by_status(caplog: pytest.LogCaptureFixture) -> None:
    with running(service()) as url:
        for path in ("/a", "/b", "/boom"):
            httpx.get(url + path)
        assert sample(url, "demo_requests_total", status="200") == 2
        assert sample(url, "demo_requests_total", status="500") == 1
        assert sample(url, "demo_bytes_sent_total") > 0
    assert "secret detail" in caplog.text  # the traceback is logged, not sent


def test_a_flood_of_errors_logs_a_few_tracebacks_not_one_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """500 requests reaching one bug: 10 tracebacks (the burst of a window) at ERROR, the rest
    only at DEBUG; another bug still gets its own burst. Each was a traceback of ~2.5 KB."""
    with (
        caplog.at_level(logging.INFO, logger="pythonhosted.web.shell"),
        running(service()) as url,
    ):
        answers = asyncio.run(fetch_all(url, ["/boom"] * 500 + ["/head"] * 3))
        assert [answer.status for answer in answers] == [500] * 503
        assert sample(url, "demo_requests_total", status="500") == 503
    logged = [r for r in caplog.records if r.name == "pythonhosted.web.shell"]
    assert [(r.levelname, r.getMessage()) for r in logged] == [
        ("ERROR", "unhandled error for GET b'/boom'")
    ] * 10 + [("ERROR", "unhandled error for GET b'/head'")] * 3
    assert all(r.exc_info is not None for r in logged)


def test_requests_in_flight_are_counted_until_their_handler_ends() -> None:
    """However a handler ends (an answer, an error before or after the head), its request
    leaves the count; the scrape that reads it is in it."""
    with running(service()) as url, ThreadPoolExecutor(1) as pool:
        assert sample(url, "demo_requests_in_flight") == 1
        waiting = pool.submit(httpx.get, url + "/wait")
        wait_until(lambda: sample(url, "demo_requests_in_flight") == 2)
        RELEASE.set()
        assert waiting.result(timeout=30).text == "GET /wait\n"
        for path in ("/boom", "/head"):
            httpx.get(url + path)
        with pytest.raises(httpx.HTTPError):
            httpx.get(url + "/half")  # cut short after half its body
        wait_until(lambda: sample(url, "demo_requests_in_flight") == 1)


def test_an_error_after_the_head_is_still_a_proper_500() -> None:
    """The head waits for the first body message, so it can still be replaced."""
    with running(service()) as url:
        answer = httpx.get(url + "/head")
    assert (answer.status_code, answer.text) == (500, "Internal error\n")
    assert answer.headers.keys() >= SECURITY_NAMES


def test_an_error_after_body_bytes_cuts_the_connection() -> None:
    """The client learns of it from the Content-Length it was promised."""
    with running(service()) as url, pytest.raises(httpx.HTTPError):
        httpx.get(url + "/half")


def test_hsts_only_over_tls_as_a_trusted_proxy_says() -> None:
    proxied = {"X-Forwarded-Proto": "https"}
    with running(service(client=ClientFacts(trust_proxy_headers=True))) as url:
        trusted = httpx.get(url + "/page", headers=proxied)
    with running(service()) as url:
        untrusted = httpx.get(url + "/page", headers=proxied)
    assert trusted.headers["strict-transport-security"].startswith("max-age=31536000")
    assert "strict-transport-security" not in untrusted.headers


def test_parts_label_the_requests() -> None:
    parts = {"/packages/x": "legacy", "/docs/y": "docs"}
    app = service(part=lambda path: parts.get(path, "other"))
    with running(app) as url:
        httpx.get(url + "/packages/x")
        httpx.get(url + "/docs/y")
        assert sample(url, "demo_requests_total", part="legacy", status="200") == 1
        assert sample(url, "demo_requests_total", part="docs", status="200") == 1


def test_access_log_is_one_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger="pythonhosted.access"),
        running(service(access_log=True)) as url,
    ):
        httpx.get(url + "/page?q=1", headers={"User-Agent": "pip/24.0"})
    [record] = [r for r in caplog.records if r.name == "pythonhosted.access"]
    line = JsonFormatter().format(record)
    assert '"service":"demo"' in line and '"path":"/page"' in line
    assert '"status":200' in line and '"user_agent":"pip/24.0"' in line
    assert record.getMessage() == "GET /page 200"


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
# Heads whose body the server frames as chunked while passing another coding on undone: a
# proxy in front reading them otherwise could take the request behind for part of the body.
FOREIGN_CODINGS = [
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: compress,chunked\r\n",
    b"Transfer-Encoding: x-custom ,  chunked\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
]


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)  # until the server closes
    writer.close()
    return answer


def test_a_request_framed_by_a_foreign_coding_is_501_and_ends_its_connection() -> None:
    """``Transfer-Encoding: gzip, chunked`` was taken (the server framed it as chunked) and
    the request pipelined behind it answered too: a proxy in front that frames such a body
    otherwise could see one request where the service saw two. Now 501, the connection
    closed, nothing behind it read; plain chunked bodies and pipelining still work.
    200 connections of each kind at once."""
    seen: list[str] = []

    async def recording(request: Request, receive: Receive, send: Send) -> None:
        seen.append(request.path)
        await handler(request, receive, send)

    app = Service("demo", recording, ServiceRegistry("demo"))
    chunked = b"POST /plain HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"3\r\nabc\r\n0\r\n\r\n"
    last = b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    async def scenario(port: int) -> tuple[list[bytes], list[bytes]]:
        foreign = [
            b"POST /first HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n0\r\n\r\n" + SMUGGLED
            for head in FOREIGN_CODINGS
        ] * 40
        refused = await asyncio.gather(*(_exchange(port, data) for data in foreign))
        kept = await asyncio.gather(*(_exchange(port, chunked + last) for _ in range(200)))
        return refused, kept

    with running(app) as url:
        refused, kept = asyncio.run(scenario(int(url.rsplit(":", 1)[1])))
        metrics = httpx.get(url + "/metrics").text
    for answer in refused:
        assert answer.startswith(b"HTTP/1.1 501 ")
        assert answer.count(b"HTTP/1.1") == 1 and b"connection: close" in answer.lower()
        assert b"cache-control: no-store" in answer.lower()  # no shared cache keeps it
        assert answer.endswith(b"\r\n\r\nTransfer coding not implemented\n")
    assert all(answer.count(b"HTTP/1.1 200 ") == 2 for answer in kept)
    assert sorted(set(seen)) == ["/last", "/plain"]
    assert 'demo_requests_total{status="501"} 200.0' in metrics
