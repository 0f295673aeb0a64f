"""Our own HTTP/1.1 server (``pythonhosted.web.h1``) over real sockets on loopback.

An app with a ``quick`` attribute runs on it (``running`` picks the server as ``serve``
does); the app here answers ``/quick`` inside the connection and everything else over ASGI,
so each test sees both ways and the order between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from pythonhosted.web.h1.quick import QuickAnswer
from pythonhosted.web.listener import raise_open_file_limit
from pythonhosted.web.server import Bind, ServerLimits, running
from pythonhosted.web.types import Message, Receive, Scope, Send
from support.processes import wait_until

QUICK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n"
BIG = b"b" * (4 * 2**20)
BIG_HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n" % len(BIG)
DATE = re.compile(rb"date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")


class App:
    """``/quick``: answered inside the connection (``/big``: 4 MB so); ``/asgi``: over ASGI;
    ``/echo``: the request body's length; ``/stream``: a body in three pieces without a
    length; ``/fail``: an error before the head; ``/half``: a body shorter than its length;
    ``/inject``: a header value with CRLF; ``/slow``: answers once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asgi_requests = 0

    def quick(
        self,
        method: str,
        target: bytes,
        headers: dict[bytes, bytes],
        client: tuple[str, int] | None,
    ) -> QuickAnswer | None:
        if target == b"/big":
            return QuickAnswer(BIG_HEAD, BIG if method == "GET" else b"")
        if target != b"/quick":
            return None
        return QuickAnswer(QUICK_HEAD, b"quick\n" if method == "GET" else b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.asgi_requests += 1
        path = scope["path"]
        if path == "/echo":
            size = 0
            while True:
                message = await receive()
                size += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
            await _text(send, f"{size}\n".encode())
        elif path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for piece in (b"one ", b"two ", b"three\n"):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/fail":
            raise RuntimeError("broken before the head")
        elif path == "/half":
            headers = [(b"content-length", b"10")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"half"})
        elif path == "/inject":
            headers = [(b"x-value", b"a\r\nset-cookie: x=1")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"never\n"})
        elif path == "/hold":  # never reads the body it was sent
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
            await _text(send, b"held\n")
        elif path == "/slow":
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
            await _text(send, b"slow\n")
        else:
            await _text(send, b"asgi " + path.encode() + b"\n")


async def _text(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    start: Message = {"type": "http.response.start", "status": 200, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def app() -> App:
    return App()


@contextlib.contextmanager
def served(app: App, **limits: float) -> Iterator[Bind]:
    with running(app, limits=ServerLimits(**limits)) as url:  # type: ignore[arg-type]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        yield Bind(host, int(port))


def connect(bind: Bind) -> socket.socket:
    return socket.create_connection((bind.host, bind.port), timeout=30)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` responses with a Content-Length, as they came."""
    data, responses = b"", []
    while len(responses) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            length = int(re.search(rb"content-length: (\d+)", data[:end]).group(1))  # type: ignore[union-attr]
            if len(data) >= end + 4 + length:
                responses.append(data[: end + 4 + length])
                data = data[end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(responses)} responses"
        data += chunk
    return responses


def test_a_quick_answer_is_written_with_a_date_and_the_connection_kept(app: App) -> None:
    with served(app) as bind, connect(bind) as sock:
        sock.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        got = read_responses(sock, 1)[0]
        sock.sendall(b"HEAD /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        head_only = b""
        while not head_only.endswith(b"\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, "closed before the answer to HEAD"
            head_only += chunk
    assert got.startswith(QUICK_HEAD)
    assert DATE.fullmatch(got[len(QUICK_HEAD) : -len(b"\r\nquick\n")])
    assert got.endswith(b"\r\n\r\nquick\n")
    assert head_only.startswith(QUICK_HEAD) and head_only.endswith(b" GMT\r\n\r\n")
    assert app.asgi_requests == 0


def test_bytes_of_the_path_that_are_not_utf8_reach_the_app_as_replacement_characters(
    app: App,
) -> None:
    """As granian (and other ASGI servers) give them: the path was decoded with the bytes
    escaped as surrogates, which an app cannot encode (the stats web's 404 page, rendering the
    path, answered 500 with a traceback under ``serve``)."""
    with served(app) as bind, connect(bind) as sock:
        sock.sendall(b"GET /a%ff%fe%80b/caf%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_responses(sock, 1)[0]
    assert response.endswith("asgi /a\ufffd\ufffd\ufffdb/caf\u00e9\n".encode())


def test_http_1_0_and_connection_close_end_the_connection_after_the_answer(app: App) -> None:
    with served(app) as bind:
        for request in (
            b"GET /quick HTTP/1.0\r\n\r\n",
            b"GET /quick HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /asgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ):
            with connect(bind) as sock:
                sock.sendall(request)
                data = read_until_closed(sock)
            assert data.count(b"HTTP/1.1 200 OK") == 1
            assert b"connection: close\r\n" in data


def test_pipelined_requests_are_answered_in_order_whichever_way_each_goes(app: App) -> None:
    paths = [b"/quick" if n % 3 else b"/asgi-%d" % n for n in range(3000)]
    with served(app) as bind, connect(bind) as sock:
        sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in paths))
        answers = read_responses(sock, len(paths))
    bodies = [answer.split(b"\r\n\r\n", 1)[1] for answer in answers]
    assert bodies == [b"quick\n" if p == b"/quick" else b"asgi " + p + b"\n" for p in paths]


def test_a_client_that_pipelines_without_reading_is_stopped_being_read(app: App) -> None:
    """Answers would pile up in the server's memory for a client that sends and never reads:
    the server stops reading it once its answers wait, so the client's sends block."""
    request = b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n"
    total = 1_000_000  # 35 MB of requests, 180 MB of answers; the kernel buffers ~5 MB
    with served(app) as bind, connect(bind) as sock:
        sock.setblocking(False)
        sent, blocked_at, deadline = 0, None, time.monotonic() + 60
        batch = request * 1000
        while sent < total and time.monotonic() < deadline:
            try:
                sock.send(batch)  # a partial send is rare; counted as whole, it errs low
                sent += 1000
            except BlockingIOError:
                blocked_at = sent
                break
    assert blocked_at is not None and blocked_at < total // 2


def test_a_body_the_app_does_not_read_is_not_read_from_the_client(app: App) -> None:
    """An upload the app is not taking stops being read (the client's sends block), in
    large reads as in small ones: the server holds a bounded part of it, not all of it."""
    total = 200 * 2**20
    with served(app) as bind, connect(bind) as sock:
        try:
            sock.sendall(b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
            sock.setblocking(False)
            sent, piece = 0, b"u" * 2**20
            while sent < total:
                try:
                    sent += sock.send(piece)
                except BlockingIOError:
                    break
        finally:
            app.release.set()
    assert sent < total // 4


def test_a_head_over_the_limit_is_431_however_it_arrives(app: App) -> None:
    many = b"".join(b"X-H%d: v\r\n" % n for n in range(101))
    big = b"X-Big: " + b"y" * 9000 + b"\r\n"
    with served(app) as bind:
        for head in (many, big):
            with connect(bind) as sock:
                sock.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
                assert read_until_closed(sock).startswith(b"HTTP/1.1 431 ")
        with connect(bind) as sock:  # a header that never ends, a byte at a time per 100
            sock.sendall(b"GET /quick HTTP/1.1\r\nX-Endless: ")
            with contextlib.suppress(OSError):
                for _ in range(100_000):
                    sock.sendall(b"z" * 100)
            assert read_until_closed(sock).startswith(b"HTTP/1.1 431 ")
        with connect(bind) as sock:
            sock.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n" + b"X-H: v\r\n" * 99 + b"\r\n")
            assert read_responses(sock, 1)[0].endswith(b"quick\n")


def test_a_head_not_complete_by_the_deadline_ends_the_connection(app: App) -> None:
    with served(app, header_timeout=1.0) as bind:
        idle, trickle, kept = connect(bind), connect(bind), connect(bind)
        trickle.sendall(b"GET /quick HTTP/1.1\r\n")
        kept.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(kept, 1)[0].endswith(b"quick\n")
        began = time.monotonic()
        for sock in (idle, trickle, kept):
            assert read_until_closed(sock) == b""
            sock.close()
        assert time.monotonic() - began < 20


def test_past_the_bound_a_waiting_client_takes_the_slot_idle_longest(app: App) -> None:
    """At the bound a client waiting in the backlog makes the server close the connection
    idle longest (as nginx reuses its idle ones); the others stay, kept alive."""
    # The head deadline far off: only the wait can free a slot here.
    with served(app, max_connections=4, header_timeout=120) as bind:
        first = [connect(bind) for _ in range(4)]
        for sock in first:  # answered one after the other: first[0] is idle longest
            sock.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
            read_responses(sock, 1)
            time.sleep(0.02)  # idle ages apart by more than the loop clock's millisecond
        waiting = connect(bind)  # in the backlog: accepted by the kernel, not by the server
        waiting.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(waiting, 1)[0].endswith(b"quick\n")
        assert read_until_closed(first[0]) == b""
        for sock in first[1:]:
            sock.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(sock, 1)[0].endswith(b"quick\n")
        for sock in (*first, waiting):
            sock.close()


def test_past_the_bound_a_request_in_progress_or_a_head_begun_keeps_its_slot(app: App) -> None:
    """No connection idle: the waiting client waits for one to become idle (here the slow
    answer ends) and takes its slot; the half-sent head keeps its own."""
    with served(app, max_connections=2, header_timeout=120) as bind:
        busy, begun = connect(bind), connect(bind)
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        begun.sendall(b"GET /quick HTTP/1.1\r\n")
        wait_until(lambda: app.asgi_requests == 1)
        waiting = connect(bind)
        waiting.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        waiting.settimeout(2.5)  # the server looks for idle connections every second
        with pytest.raises(TimeoutError):
            waiting.recv(1)
        app.release.set()
        assert read_responses(busy, 1)[0].endswith(b"slow\n")
        waiting.settimeout(30)
        assert read_responses(waiting, 1)[0].endswith(b"quick\n")
        assert read_until_closed(busy) == b""  # the slot it left idle went to the waiting one
        begun.sendall(b"Host: x\r\n\r\n")
        assert read_responses(begun, 1)[0].endswith(b"quick\n")
        for sock in (busy, begun, waiting):
            sock.close()


def test_past_the_bound_an_answer_still_leaving_keeps_its_slot(app: App) -> None:
    """A quick answer the client has not taken yet (4 MB written at once, its reader not
    reading) is not idle: the waiting client gets the slot of the one that is, and the
    download then arrives whole on a connection still kept alive."""
    with served(app, max_connections=2, header_timeout=120) as bind:
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        reader.settimeout(30)
        reader.connect((bind.host, bind.port))
        reader.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.recv(16, socket.MSG_PEEK).startswith(b"HTTP/1.1 200")  # written
        time.sleep(0.02)  # idle ages apart: the reader's would be the longest, were it idle
        kept = connect(bind)
        kept.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        read_responses(kept, 1)
        waiting = connect(bind)
        waiting.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(waiting, 1)[0].endswith(b"quick\n")
        assert read_until_closed(kept) == b""
        download = read_responses(reader, 1)[0]
        assert download.startswith(b"HTTP/1.1 200 OK\r\n") and download.endswith(BIG)
        reader.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")  # still kept alive
        assert read_responses(reader, 1)[0].endswith(b"quick\n")
        for sock in (reader, kept, waiting):
            sock.close()


def test_a_crowd_as_large_as_the_bound_is_taken_in_whole(app: App) -> None:
    """As many clients as the bound, connecting as fast as they can: every one is taken in
    and answered. Counting accepted connections by their tasks counted each twice for a loop
    turn or two after it opened: a burst looked like the bound, and the rest of the crowd
    waited in the backlog for a close only the head deadline would bring."""
    bound = 1000
    raise_open_file_limit()  # the clients and the server's ends, in this process
    with served(app, max_connections=bound, header_timeout=120) as bind:
        for _ in range(3):
            crowd = [connect(bind) for _ in range(bound)]
            for sock in crowd:
                sock.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
            for sock in crowd:
                sock.settimeout(60)  # half the head deadline
                assert read_responses(sock, 1)[0].endswith(b"quick\n")
            for sock in crowd:
                sock.close()


def test_asgi_answers_chunked_short_failing_and_injected(app: App) -> None:
    with served(app) as bind:
        stream = httpx.get(bind.url() + "/stream")
        assert (stream.status_code, stream.headers["transfer-encoding"]) == (200, "chunked")
        assert stream.text == "one two three\n"
        failed = httpx.get(bind.url() + "/fail")
        assert (failed.status_code, failed.text) == (500, "Internal error\n")
        injected = httpx.get(bind.url() + "/inject")
        assert (injected.status_code, "x-value" in injected.headers) == (500, False)
        with connect(bind) as sock:  # 4 of 10 bytes, then the close
            sock.sendall(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_until_closed(sock).endswith(b"\r\n\r\nhalf")
        with connect(bind) as sock:
            sock.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
            data = read_until_closed(sock)
            assert data.endswith(b"\r\n\r\none two three\n") and b"chunked" not in data


def test_request_bodies_reach_the_app_whole_chunked_or_after_100_continue(app: App) -> None:
    body = b"b" * 5_000_000
    with served(app) as bind:
        assert httpx.post(bind.url() + "/echo", content=body).text == "5000000\n"
        chunks = (body[n : n + 70_000] for n in range(0, len(body), 70_000))
        assert httpx.post(bind.url() + "/echo", content=chunks).text == "5000000\n"
        with connect(bind) as sock:
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"abc")
            assert read_responses(sock, 1)[0].endswith(b"\r\n\r\n3\n")


def test_a_stop_lets_the_request_in_flight_finish_and_closes_idle_connections(
    app: App,
) -> None:
    """The idle connection is closed as the stop begins; the request in flight (released
    only then) finishes, with ``Connection: close``, before the server ends."""
    idle_closed = threading.Event()
    answers: list[bytes] = []
    threads: list[threading.Thread] = []
    try:
        with served(app) as bind:
            idle, busy = connect(bind), connect(bind)
            busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: app.asgi_requests == 1)

            def release_once_the_stop_began() -> None:
                if read_until_closed(idle) == b"":
                    idle_closed.set()
                app.release.set()

            def finish() -> None:
                answers.append(read_until_closed(busy))

            threads = [threading.Thread(target=f) for f in (release_once_the_stop_began, finish)]
            for thread in threads:
                thread.start()
    finally:
        app.release.set()  # whatever happened, nothing waits 30 s
        for thread in threads:
            thread.join(30)
        idle.close()
        busy.close()
    assert idle_closed.is_set()
    assert answers and answers[0].endswith(b"\r\n\r\nslow\n")
    assert b"connection: close\r\n" in answers[0]
