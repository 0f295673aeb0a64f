"""The cache in front of camo (spec rules 22-25), against an image host on 127.0.0.2 whose
answers (Cache-Control, validators, delays, failures) each test chooses by URL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest

from pythonhosted.camo import sign_url
from pythonhosted.camo.cache.freshness import freshness
from pythonhosted.web.purges import PurgeJournal, shared_journal
from pythonhosted.web.server import Bind, free_port, running, wait_for_port
from pythonhosted.web.types import Receive, Scope, Send
from support.processes import finish_group, spawn, wait_until

if TYPE_CHECKING:
    from conftest import Camo, CamoFactory

SECRET = "purge-secret"
#: query parameter -> response header the image host sends
QUERY_HEADERS = (
    ("cc", b"cache-control"),
    ("etag", b"etag"),
    ("lm", b"last-modified"),
    ("expires", b"expires"),
    ("vary", b"vary"),
    ("date", b"date"),
)


def image(size: int, seed: str) -> bytes:
    """A PNG-signed body of ``size`` bytes, different for each seed."""
    pattern = (seed.encode() * (size // max(1, len(seed)) + 1))[: max(0, size - 8)]
    return b"\x89PNG\r\n\x1a\n" + pattern


@dataclass
class Host:
    """The image host: ``/img/NAME?cc=..&etag=..&size=..`` answers as asked."""

    base: str = ""
    hits: Counter[str] = field(default_factory=Counter)
    seen: dict[str, dict[str, str]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)  # answer 503
    gone: set[str] = field(default_factory=set)  # answer 404

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        name = scope["path"].rsplit("/", 1)[1]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.hits[name] += 1
        self.seen[name] = headers
        if "delay" in query:
            await asyncio.sleep(float(query["delay"]))
        if name in self.failing:
            await _answer(send, 503, [], b"down")
            return
        if name in self.gone:
            await _answer(send, 404, [], b"gone")
            return
        sent = [(b"content-type", b"image/png")]
        for key, header in QUERY_HEADERS:
            if key in query:
                sent.append((header, query[key].encode()))
        if "etag" in query and headers.get("if-none-match") == query["etag"]:
            await _answer(send, 304, sent[1:], b"")
            return
        body = image(int(query.get("size", 20_000)), name + query.get("version", ""))
        if query.get("chunked"):
            await send({"type": "http.response.start", "status": 200, "headers": sent})
            for start in range(0, len(body), 4096):
                chunk = body[start : start + 4096]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        await _answer(send, 200, sent, body)

    def url(self, name: str, **query: Any) -> str:
        return f"{self.base}/img/{name}" + ("?" + urlencode(query) if query else "")


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    state = Host()
    with running(state, host="127.0.0.2") as base:
        state.base = base
        yield state


def unique(prefix: str = "i") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cached(make_camo: CamoFactory, tmp_path: Path) -> Callable[..., Any]:
    """A camo with the cache on in ``tmp_path`` (settings as keyword arguments)."""

    def factory(**settings: Any) -> Any:
        values = {"cache_dir": tmp_path / "cache", "cache_purge_secret": SECRET}
        return make_camo(**{**values, **settings})

    return factory


@pytest.fixture
def camo(cached: Callable[..., Any]) -> Iterator[Camo]:
    with cached() as server:
        yield server


def metric(camo: Camo, name: str) -> float:
    for line in camo.client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- hits, expiry, revalidation --


def test_hit_needs_no_upstream_request(camo: Camo, host: Host) -> None:
    name = unique()
    first = camo.get(host.url(name, cc="max-age=600", etag='"v1"'))
    second = camo.get(host.url(name, cc="max-age=600", etag='"v1"'))
    assert host.hits[name] == 1
    assert (first.headers["x-camo-cache"], second.headers["x-camo-cache"]) == ("MISS", "HIT")
    assert first.content == second.content == image(20_000, name)
    for header in ("content-type", "content-length", "etag", "cache-control", "server"):
        assert first.headers[header] == second.headers[header]
    assert second.headers["content-security-policy"] == first.headers["content-security-policy"]
    assert int(second.headers["age"]) >= 0
    assert metric(camo, 'camo_cache_responses_total{result="hit"}') == 1


def test_every_signed_form_shares_one_entry(camo: Camo, host: Host) -> None:
    name = unique()
    url = host.url(name)
    for encoding in ("hex", "base64", "hex"):
        assert camo.client.get(camo.url(url, encoding)).status_code == 200
    assert host.hits[name] == 1


def test_max_age_expiry(camo: Camo, host: Host) -> None:
    name = unique()
    url = host.url(name, cc="max-age=1")
    assert camo.get(url).headers["x-camo-cache"] == "MISS"
    assert camo.get(url).headers["x-camo-cache"] == "HIT"
    wait_until(lambda: camo.get(url).headers["x-camo-cache"] == "MISS")
    assert host.hits[name] == 2


def test_revalidation_with_etag(camo: Camo, host: Host) -> None:
    name = unique()
    url = host.url(name, cc="no-cache", etag='"v7"')
    camo.get(url)
    response = camo.get(url)
    assert response.headers["x-camo-cache"] == "REVALIDATED"
    assert response.content == image(20_000, name)
    assert host.seen[name]["if-none-match"] == '"v7"'
    assert host.hits[name] == 2
    assert metric(camo, 'camo_cache_responses_total{result="revalidated"}') == 1


def test_revalidation_with_last_modified(camo: Camo, host: Host) -> None:
    name = unique()
    modified = "Wed, 21 Oct 2015 07:28:00 GMT"
    url = host.url(name, cc="max-age=0", lm=modified)
    camo.get(url)
    camo.get(url)
    assert host.seen[name]["if-modified-since"] == modified


@pytest.mark.parametrize(
    "query",
    [
        {"cc": "no-store"},
        {"cc": "private, max-age=600"},
        {"cc": "max-age=600", "vary": "Accept-Language"},
        {"cc": "max-age=600", "vary": "*"},
    ],
)
def test_not_stored(camo: Camo, host: Host, query: dict[str, str]) -> None:
    name = unique()
    for _ in range(3):
        response = camo.get(host.url(name, **query))
        assert response.status_code == 200
        assert response.headers["x-camo-cache"] == "MISS"
    assert host.hits[name] == 3


def test_vary_on_accept_is_stored(camo: Camo, host: Host) -> None:
    name = unique()
    for _ in range(2):
        camo.get(host.url(name, vary="Accept, Accept-Encoding"))
    assert host.hits[name] == 1


@pytest.mark.parametrize(
    ("query", "fresh_for"),
    [
        ({"cc": "max-age=600, s-maxage=0"}, 0),
        ({"expires": "Thu, 01 Jan 1970 00:00:00 GMT", "date": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0),
        ({"expires": "0"}, 0),
        ({}, 3600),  # the default TTL
        ({"cc": "max-age=999999999"}, 7 * 86400),  # capped
        ({"cc": "max-age=" + "9" * 1_000}, 7 * 86400),  # a thousand digits: capped
    ],
)
def test_freshness_sources(camo: Camo, host: Host, query: dict[str, str], fresh_for: int) -> None:
    name = unique()
    camo.get(host.url(name, **query))
    second = camo.get(host.url(name, **query))
    assert second.headers["x-camo-cache"] == ("HIT" if fresh_for else "MISS")


def test_default_and_maximum_ttl_settings(cached: Callable[..., Any], host: Host) -> None:
    name = unique()
    with cached(cache_default_ttl="1s", cache_max_ttl="2s") as camo:
        camo.get(host.url(name))
        assert camo.get(host.url(name)).headers["x-camo-cache"] == "HIT"
        wait_until(lambda: camo.get(host.url(name)).headers["x-camo-cache"] == "MISS")


# -- stale-if-error --


def test_stale_if_error(cached: Callable[..., Any], host: Host) -> None:
    name = unique()
    url = host.url(name, cc="max-age=0")
    with cached(cache_stale_if_error="2s") as camo:
        camo.get(url)
        host.failing.add(name)
        try:
            response = camo.get(url)
            assert (response.status_code, response.headers["x-camo-cache"]) == (200, "STALE")
            assert response.content == image(20_000, name)
            assert metric(camo, 'camo_cache_responses_total{result="stale"}') == 1
            # past the stale-if-error window: the failure shows
            wait_until(lambda: camo.get(url).status_code == 502)
        finally:
            host.failing.discard(name)


def test_requests_that_waited_for_a_failed_revalidation_are_tagged_stale(
    cached: Callable[..., Any], host: Host
) -> None:
    """Requests arriving while a stale entry is revalidated wait for that one exchange; when
    upstream fails and the stale image stands in, they were sent it tagged ``HIT``, as if it
    were fresh."""
    name = unique()
    url = host.url(name, cc="max-age=0", delay="0.5")
    with cached(cache_stale_if_error="60s") as camo:
        camo.get(url)
        host.failing.add(name)
        try:

            async def burst() -> list[tuple[int, str, bytes]]:
                async with httpx.AsyncClient(timeout=30) as client:
                    answers = await asyncio.gather(*(client.get(camo.url(url)) for _ in range(20)))
                return [(a.status_code, a.headers["x-camo-cache"], a.content) for a in answers]

            answers = asyncio.run(burst())
        finally:
            host.failing.discard(name)
    assert Counter((status, tag) for status, tag, _ in answers) == {(200, "STALE"): 20}
    assert {body for _, _, body in answers} == {image(20_000, name)}


def test_must_revalidate_is_never_served_stale(camo: Camo, host: Host) -> None:
    name = unique()
    url = host.url(name, cc="max-age=0, must-revalidate")
    camo.get(url)
    host.failing.add(name)
    try:
        response = camo.get(url)
    finally:
        host.failing.discard(name)
    assert (response.status_code, response.headers["x-camo-error"]) == (
        502,
        "upstream answered 503",
    )


def test_stale_entry_is_not_served_over_a_refusal(cached: Callable[..., Any], host: Host) -> None:
    """Upstream now answers 404 (the image is gone): that is an answer, not a failure."""
    name = unique()
    with cached() as camo:
        camo.get(host.url(name, cc="max-age=0"))
        host.gone.add(name)
        response = camo.get(host.url(name, cc="max-age=0"))
    assert (response.status_code, response.headers["x-camo-error"]) == (
        404,
        "upstream answered 404",
    )


# -- coalescing --


def test_concurrent_misses_make_one_upstream_request(camo: Camo, host: Host) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    name = unique()
    path = camo.url(host.url(name, delay="1", cc="max-age=600")).removeprefix(camo.base)
    address = camo.base.removeprefix("http://").split(":")

    async def one() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(address[0], int(address[1]))
        writer.write(b"GET %s HTTP/1.1\r\nHost: camo\r\nConnection: close\r\n\r\n" % path.encode())
        data = await reader.read()
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    async def burst() -> list[tuple[int, bytes]]:
        return await asyncio.gather(*(one() for _ in range(1000)))

    try:
        results = asyncio.run(burst())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert host.hits[name] == 1
    assert {status for status, _ in results} == {200}
    assert {body for _, body in results} == {image(20_000, name)}
    coalesced = metric(camo, 'camo_cache_responses_total{result="coalesced"}')
    hits = metric(camo, 'camo_cache_responses_total{result="hit"}')
    assert coalesced + hits == 999


# -- sizes and bounds --


def test_body_over_the_size_limit_is_never_cached(cached: Callable[..., Any], host: Host) -> None:
    with cached(cache_object_max_bytes=10_000) as camo:
        for query in ({"size": 20_000}, {"size": 20_000, "chunked": 1}):
            name = unique()
            for _ in range(2):
                response = camo.get(host.url(name, **query))
                assert len(response.content) == 20_000
            assert host.hits[name] == 2
        small = unique()
        for _ in range(2):
            camo.get(host.url(small, size=5_000, chunked=1))
        assert host.hits[small] == 1


def test_memory_and_disk_stay_within_their_bounds(cached: Callable[..., Any], host: Host) -> None:
    names = [unique() for _ in range(120)]
    with cached(cache_max_bytes=1_000_000, cache_memory_bytes=300_000) as camo:
        for name in names:
            assert camo.get(host.url(name, size=20_000)).status_code == 200
        assert metric(camo, 'camo_cache_bytes{tier="disk"}') <= 1_000_000
        assert metric(camo, 'camo_cache_bytes{tier="memory"}') <= 300_000
        assert 40 <= metric(camo, 'camo_cache_entries{tier="disk"}') <= 50
        # least recently used first out: the first images are gone, the last ones are there
        assert camo.get(host.url(names[0], size=20_000)).headers["x-camo-cache"] == "MISS"
        assert camo.get(host.url(names[-1], size=20_000)).headers["x-camo-cache"] == "HIT"


def test_large_image_is_served_from_disk(cached: Callable[..., Any], host: Host) -> None:
    name = unique()
    with cached(cache_memory_object_bytes=64_000) as camo:
        camo.get(host.url(name, size=3_000_000))
        response = camo.get(host.url(name, size=3_000_000))
        assert response.headers["x-camo-cache"] == "HIT"
        assert response.content == image(3_000_000, name)
        assert metric(camo, 'camo_cache_entries{tier="memory"}') == 0


# -- what the cache must never change --


def test_filter_rules_are_checked_on_every_hit(
    cached: Callable[..., Any], host: Host, tmp_path: Path
) -> None:
    name = unique()
    url = host.url(name, cc="max-age=600")
    rules = tmp_path / "rules.txt"
    rules.write_text(f"deny||*||/img/{name}\n")
    with cached() as camo:
        assert camo.get(url).status_code == 200
    with cached(filter_ruleset=rules) as camo:
        response = camo.get(url)
    assert response.status_code == 404
    assert response.headers["x-camo-error"].endswith(f"matches deny rule deny||*||/img/{name}")
    assert host.hits[name] == 1


def test_a_redirects_target_is_checked_on_every_hit(
    cached: Callable[..., Any], host: Host, tmp_path: Path, upstream: Any
) -> None:
    """Cached through a redirect to the image host; a rule added later against that host
    refuses the cached image although the signed URL itself is still allowed."""
    name = unique()
    target = host.url(name, cc="max-age=600")
    via = f"{upstream.base}/redirect?{urlencode({'to': target})}"
    rules = tmp_path / "rules.txt"
    rules.write_text(f"deny||*||/img/{name}\n")
    with cached() as camo:
        assert camo.get(via).status_code == 200
    with cached(filter_ruleset=rules) as camo:
        response = camo.get(via)
    assert response.status_code == 404
    assert host.hits[name] == 1


def test_refused_url_is_never_answered_from_the_cache(
    cached: Callable[..., Any], host: Host
) -> None:
    name = unique()
    url = host.url(name, cc="max-age=600")
    with cached() as camo:
        assert camo.get(url).status_code == 200
    with cached(allow_networks=["127.0.0.3/32"]) as camo:
        response = camo.get(url)
    assert (response.status_code, response.headers["x-camo-error"]) == (
        404,
        "address 127.0.0.2 is in refused range 127.0.0.0/8",
    )


# -- client requests the cache answers --


def test_client_conditionals_answered_from_the_cache(camo: Camo, host: Host) -> None:
    name = unique()
    url = host.url(name, cc="max-age=600", etag='"e1"')
    camo.get(url)
    response = camo.get(url, headers={"If-None-Match": '"e1"'})
    assert response.status_code == 304
    assert response.headers["etag"] == '"e1"'
    assert camo.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert host.hits[name] == 1


def test_head_and_range(camo: Camo, host: Host) -> None:
    name = unique()
    url = host.url(name, cc="max-age=600")
    assert camo.client.head(camo.url(url)).headers["x-camo-cache"] == "MISS"  # not stored
    camo.get(url)
    head = camo.client.head(camo.url(url))
    assert (head.status_code, head.headers["x-camo-cache"]) == (200, "HIT")
    assert head.headers["content-length"] == "20000"
    ranged = camo.get(url, headers={"Range": "bytes=0-9"})  # straight upstream
    assert "x-camo-cache" not in ranged.headers
    assert host.hits[name] == 3


# -- purge --


def test_purge(camo: Camo, host: Host) -> None:
    name = unique()
    url = host.url(name, cc="max-age=600")
    camo.get(url)
    signed = camo.url(url)
    assert camo.client.request("PURGE", signed).status_code == 401
    wrong = camo.client.request("PURGE", signed, headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.headers["x-camo-error"]) == (403, "purge credential refused")
    assert camo.get(url).headers["x-camo-cache"] == "HIT"
    purged = camo.client.request("PURGE", signed, headers={"Authorization": f"Bearer {SECRET}"})
    assert (purged.status_code, purged.text) == (200, "Purged\n")
    assert camo.get(url).headers["x-camo-cache"] == "MISS"
    assert host.hits[name] == 2
    bad = camo.client.request(
        "PURGE", signed.replace("/", "/0", 3), headers={"Authorization": f"Bearer {SECRET}"}
    )
    assert bad.status_code == 404


def test_purge_needs_a_configured_secret(cached: Callable[..., Any], host: Host) -> None:
    with cached(cache_purge_secret=None) as camo:
        response = camo.client.request(
            "PURGE", camo.url(host.url("x")), headers={"Authorization": "Bearer anything"}
        )
    assert response.status_code == 403


# -- disk: restarts and crashes --


def test_entries_survive_a_restart(cached: Callable[..., Any], host: Host) -> None:
    name = unique()
    url = host.url(name, cc="max-age=600", size=300_000)
    with cached() as camo:
        camo.get(url)
        # The entry is committed just after the last byte went out: wait for it, not the stop.
        wait_until(lambda: metric(camo, "camo_cache_stores_total") == 1)
    with cached() as camo:
        response = camo.get(url)
    assert response.headers["x-camo-cache"] == "HIT"
    assert response.content == image(300_000, name)
    assert host.hits[name] == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "footer"])
def test_damaged_disk_entry_is_never_served(
    cached: Callable[..., Any], host: Host, tmp_path: Path, damage: str
) -> None:
    name = unique()
    url = host.url(name, cc="max-age=600", size=300_000)
    with cached() as camo:
        camo.get(url)
        # The entry is committed just after the last byte went out: wait for it, not the stop.
        wait_until(lambda: metric(camo, "camo_cache_stores_total") == 1)
    [entry_file] = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and len(p.name) == 64]
    data = entry_file.read_bytes()
    damaged = {
        "truncate": data[: len(data) // 2],
        "flip": data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:],
        "empty": b"",
        "footer": data[:-3],
    }[damage]
    entry_file.write_bytes(damaged)
    with cached() as camo:
        response = camo.get(url)
        assert response.headers["x-camo-cache"] == "MISS"
        assert response.content == image(300_000, name)
        assert metric(camo, "camo_cache_damaged_total") == 1
    assert host.hits[name] == 2


def test_a_second_process_cannot_share_a_slot(cached: Callable[..., Any], host: Host) -> None:
    with cached() as first:
        # The slot is claimed at start-up without holding it up (or by the first request):
        # a request makes sure the first process has it before the second one starts.
        assert first.get(host.url(unique())).status_code == 200
        with cached() as second:
            # the second found the only slot taken: it serves, uncached
            name = unique()
            for _ in range(2):
                assert second.get(host.url(name)).status_code == 200
            assert "x-camo-cache" not in second.get(host.url(name)).headers
            assert first.get(host.url(name)).headers["x-camo-cache"] == "MISS"


def test_kill_during_a_disk_write_never_serves_a_cut_image(host: Host, tmp_path: Path) -> None:
    """kill -9 a camo process while it writes a 20 MB image to disk (the client reads slowly
    through a small receive buffer, so camo, which reads upstream only as fast as the client
    takes the body, is mid-file); the restarted camo must serve only the whole image."""
    cache = tmp_path / "cache"
    name = unique()
    size = 20_000_000
    url = host.url(name, cc="max-age=600", size=size, chunked=1)

    def start() -> tuple[subprocess.Popen[bytes], Bind]:
        bind = Bind("127.0.0.1", free_port())
        command = [
            str(Path(sys.executable).parent / "pythonhosted"), "camo", "serve",
            f"--bind=127.0.0.1:{bind.port}", "--allow-network=127.0.0.2/32",
            f"--cache-dir={cache}", "--timeout=60s", "--max-size=30000",
            "--cache-object-max-bytes=30000000",
        ]  # fmt: skip
        env = {"PYTHONHOSTED_CAMO_KEY": "crash-key", "PATH": "/usr/bin:/bin"}
        process = spawn(command, env=env, stderr=subprocess.DEVNULL)
        wait_for_port(bind, timeout=60, process=process)
        return process, bind

    process, bind = start()
    try:
        path = sign_url(url, b"crash-key")
        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            client.connect((bind.host, bind.port))
            client.sendall(b"GET %s HTTP/1.1\r\nHost: camo\r\n\r\n" % path.encode())
            received = 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                received += len(client.recv(16 * 1024))
                partial = [p for p in cache.rglob(".tmp-*") if p.stat().st_size > 0]
                if received > 1_000_000 and partial:
                    os.killpg(process.pid, signal.SIGKILL)  # mid-write
                    break
                time.sleep(0.001)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL, "the kill did not land mid-write"
        assert [p for p in cache.rglob(".tmp-*")]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    process, bind = start()
    try:
        signed = bind.url() + sign_url(url, b"crash-key")
        response = httpx.get(signed, timeout=60)
        assert response.headers["x-camo-cache"] == "MISS"
        assert response.content == image(size, name)
        assert not list(cache.rglob(".tmp-*"))  # cleared at start-up
        again = httpx.get(signed, timeout=60)
        assert (again.headers["x-camo-cache"], again.content) == ("HIT", response.content)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("cache_control", "age", "lifetime", "aged"),
    [
        (b"max-age=\xb2", b"", 0.0, 0.0),  # Latin-1 "2": str.isdigit says yes, float() no
        (b"s-maxage=" + b"9" * 5_000, b"9" * 5_000, 7 * 86400, 2.0**31),  # past int()'s limit
        (b"max-age=60", b"\xb9", 60.0, 0.0),
    ],
)
def test_hostile_delta_seconds_are_bounded_not_errors(
    cache_control: bytes, age: bytes, lifetime: float, aged: float
) -> None:
    headers = [(b"cache-control", cache_control), *([(b"age", age)] if age else [])]
    found = freshness(headers, default_ttl=3600, max_ttl=7 * 86400)
    assert (found.storable, found.lifetime, found.age) == (True, lifetime, aged)


# -- the machine's limits: descriptors and disk --


def _limited_camo(
    cache: Path, limit: str, timeout: str = "30s"
) -> tuple[subprocess.Popen[bytes], Bind]:
    """``camo serve`` with the cache in ``cache``, under the shell limit ``limit``."""
    bind = Bind("127.0.0.1", free_port())
    command = [
        str(Path(sys.executable).parent / "pythonhosted"), "camo", "serve",
        f"--bind=127.0.0.1:{bind.port}", "--allow-network=127.0.0.2/32",
        f"--cache-dir={cache}", f"--timeout={timeout}",
    ]  # fmt: skip
    # No bytecode written: under a file-size limit Python would leave truncated .pyc files.
    env = {"PYTHONHOSTED_CAMO_KEY": "limit-key", "PATH": "/usr/bin:/bin"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    shell = ["bash", "-c", f'ulimit {limit} && exec "$@"', "camo", *command]
    process = spawn(shell, env=env, stderr=subprocess.PIPE)
    wait_for_port(bind, timeout=60, process=process)
    return process, bind


def _stop(process: subprocess.Popen[bytes]) -> str:
    """Stop camo gracefully; what it logged."""
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return stderr.decode()


def _metric(bind: Bind, name: str) -> float:
    for line in httpx.get(bind.url() + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_concurrent_misses_stay_within_the_open_file_limit(host: Host, tmp_path: Path) -> None:
    """Each uncached image holds a client connection, an upstream one and the cache's file.
    Under a 512-descriptor limit, 300 concurrent misses of distinct images took camo to
    EMFILE: answers 500 (the cache file would not open) and 502 (the upstream socket would
    not). Now they take stream slots, wait their turn, and every one is served and stored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the test's own 600 sockets
    process, bind = _limited_camo(tmp_path / "cache", "-n 512")
    names = [unique("fd") for _ in range(300)]
    try:

        async def burst() -> list[tuple[int, bytes]]:
            limits = httpx.Limits(max_connections=len(names))
            async with httpx.AsyncClient(base_url=bind.url(), timeout=120, limits=limits) as c:

                async def one(name: str) -> tuple[int, bytes]:
                    url = host.url(name, cc="max-age=600", delay="0.2", size=2_000)
                    response = await c.get(sign_url(url, b"limit-key"))
                    return response.status_code, response.content

                return await asyncio.gather(*(one(name) for name in names))

        answers = asyncio.run(burst())
        assert Counter(status for status, _ in answers) == {200: len(names)}
        assert [body for _, body in answers] == [image(2_000, name) for name in names]
        assert _metric(bind, "camo_cache_stores_total") == len(names)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        logged = _stop(process)
    assert "Too many open files" not in logged and "Traceback" not in logged


class HeldHost:
    """An image host that holds every answer until :meth:`release` (20 s at most)."""

    def __init__(self) -> None:
        self.started = 0
        self._released = asyncio.Event()  # set from the test's thread, on the server's loop
        self._loop: asyncio.AbstractEventLoop | None = None

    def release(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self._loop = asyncio.get_running_loop()
        self.started += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20):
                await self._released.wait()
        await _answer(send, 200, [(b"content-type", b"image/png")], image(2_000, "held"))


def test_a_hanging_image_host_leaves_the_other_hosts_their_turns(
    host: Host, tmp_path: Path
) -> None:
    """Uncached images take stream slots first come, first served. 100 images of one host
    that hangs held all 64 slots of a camo under a 512-descriptor limit, and 20 images of a
    healthy host queued behind them until those reached ``--timeout`` (504). A host now
    holds at most a quarter of the slots, so the healthy host's images are served while the
    other hangs."""
    held = HeldHost()
    with running(held, host="127.0.0.2") as held_base:
        process, bind = _limited_camo(tmp_path / "cache", "-n 512", timeout="8s")
        try:

            async def scenario() -> tuple[Counter[int], int, Counter[int]]:
                limits = httpx.Limits(max_connections=200)
                async with httpx.AsyncClient(base_url=bind.url(), timeout=60, limits=limits) as c:

                    async def get(url: str) -> int:
                        return (await c.get(sign_url(url, b"limit-key"))).status_code

                    hanging = [
                        asyncio.create_task(get(f"{held_base}/img/{unique('held')}"))
                        for _ in range(100)
                    ]
                    while held.started < 16:
                        await asyncio.sleep(0.05)
                    healthy = await asyncio.gather(
                        *(get(host.url(unique("other"), size=2_000)) for _ in range(20))
                    )
                    answered_meanwhile = sum(task.done() for task in hanging)
                    held.release()
                    return (
                        Counter(healthy),
                        answered_meanwhile,
                        Counter(await asyncio.gather(*hanging)),
                    )

            healthy, answered_meanwhile, hanging = asyncio.run(scenario())
        finally:
            held.release()
            logged = _stop(process)
    assert (healthy, answered_meanwhile) == (Counter({200: 20}), 0)
    assert hanging == Counter({200: 100})
    assert "Traceback" not in logged


def test_a_disk_that_refuses_the_entry_costs_no_image(host: Host, tmp_path: Path) -> None:
    """A full disk (here: a 16 KB file-size limit, so writing the entry fails with EFBIG)
    never fails the image it would have kept: relayed whole, not stored, counted."""
    process, bind = _limited_camo(tmp_path / "cache", "-f 16")
    name = unique("disk")
    signed = bind.url() + sign_url(host.url(name, cc="max-age=600", size=100_000), b"limit-key")
    try:
        for _ in range(2):
            response = httpx.get(signed)
            assert (response.status_code, response.headers["x-camo-cache"]) == (200, "MISS")
            assert response.content == image(100_000, name)
        assert host.hits[name] == 2
        assert _metric(bind, "camo_cache_write_failures_total") == 2
        assert not list((tmp_path / "cache").rglob(".tmp-*"))
    finally:
        logged = _stop(process)
    assert "camo cache: not storing" in logged and "Traceback" not in logged


def test_a_purge_reaches_every_worker(host: Host, tmp_path: Path) -> None:
    """`camo serve --workers 2`: a PURGE reaches one worker, and the other served the image
    on from its memory tier (here after the host stopped having it: a taken-down image went
    on being shown). Now every worker forgets it."""
    bind = Bind("127.0.0.1", free_port())
    command = [
        *(sys.executable, "-m", "pythonhosted", "camo", "serve", "--workers=2"),
        *(f"--bind=127.0.0.1:{bind.port}", f"--cache-dir={tmp_path / 'cache'}"),
        *("--key=test-key", "--allow-network=127.0.0.2/32"),
    ]
    env = {**os.environ, "PYTHONHOSTED_CAMO__CACHE_PURGE_SECRET": SECRET}
    process = spawn(command, env=env, stderr=subprocess.PIPE)
    name = unique()
    signed = bind.url() + sign_url(host.url(name, cc="max-age=600"), b"test-key")
    try:
        wait_for_port(bind, timeout=60, process=process)

        def in_both_memories() -> bool:
            assert httpx.get(signed).status_code == 200  # a new connection: either worker
            scrape = httpx.get(bind.url() + "/metrics").text
            return 'camo_cache_entries{tier="memory"} 2.0' in scrape

        wait_until(in_both_memories, timeout=60)
        host.gone.add(name)
        bearer = {"authorization": f"Bearer {SECRET}"}
        assert httpx.request("PURGE", signed, headers=bearer).text == "Purged\n"
        assert [httpx.get(signed).status_code for _ in range(20)] == [404] * 20
    finally:
        _, stderr = finish_group(process)
    assert b"Traceback" not in stderr


def test_a_worker_that_missed_purges_forgets_every_entry(
    cached: Callable[..., Any], host: Host, tmp_path: Path
) -> None:
    """The journal starts afresh past what a worker had read (thousands of purges by the
    others): it cannot know which it missed, so it forgets every entry, in memory and on disk."""
    small, large = unique(), unique()
    urls = [host.url(small, cc="max-age=600"), host.url(large, cc="max-age=600", size=300_000)]
    with shared_journal("camo") as journal, cached() as camo:
        for url in urls:
            camo.get(url)
        wait_until(lambda: metric(camo, "camo_cache_stores_total") == 2)
        other_worker = PurgeJournal(journal, max_bytes=100)  # ~10 entries
        for n in range(20):
            other_worker.publish(f"key-{n:03d}")
        assert [camo.get(url).headers["x-camo-cache"] for url in urls] == ["MISS", "MISS"]
        assert (host.hits[small], host.hits[large]) == (2, 2)


# `camo serve --workers 2` under a file-size limit: the purge journal's writes past it fail as
# on a full disk.
SERVE_LIMITED = """
import resource, signal, sys
from pythonhosted.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit: EFBIG, as ENOSPC on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
main(["camo", "serve", *sys.argv[1:]])
"""


def test_a_purge_the_full_journal_refuses_is_503(tmp_path: Path) -> None:
    """A purge the workers' journal could not record would reach one worker only: 503, say
    to try again, one line in the log."""
    bind = Bind("127.0.0.1", free_port())
    flags = [f"--bind=127.0.0.1:{bind.port}", f"--cache-dir={tmp_path}", "--key=test-key"]
    env = {**os.environ, "PYTHONHOSTED_CAMO__CACHE_PURGE_SECRET": SECRET}
    command = [sys.executable, "-c", SERVE_LIMITED, "--workers=2", *flags]
    process = spawn(command, env=env, stderr=subprocess.PIPE)
    bearer = {"authorization": f"Bearer {SECRET}"}
    try:
        wait_for_port(bind, timeout=60, process=process)
        statuses = []
        for n in range(200):
            signed = sign_url(f"http://127.0.0.2/{n:04d}-{'i' * 40}.png", b"test-key")
            purged = httpx.request("PURGE", bind.url() + signed, headers=bearer)
            statuses.append(purged.status_code)
            if purged.status_code != 200:
                break
    finally:
        _, stderr = finish_group(process)
    assert (set(statuses[:-1]), statuses[-1]) == ({200}, 503)
    reason = "purge not recorded for every worker (File too large); try again"
    assert purged.headers["x-camo-error"] == reason
    assert b"Traceback" not in stderr
    assert stderr.count(b"not shared with the other workers: File too large") == 1
