"""Answers follow publishes (no stale cache, ETag changes), stay right while publish writes
from another process or this one, and budgets and caches stay bounded."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest

from pythonhosted.config import Settings
from pythonhosted.stats_web import app as app_module
from pythonhosted.stats_web import build_app
from pythonhosted.stats_web.answers import Answer, AnswerCache
from pythonhosted.stats_web.limits import ClientTable, RateLimiter
from pythonhosted.storage import Store
from pythonhosted.warehouse.access import intent_file
from pythonhosted.web.server import Bind, free_port, running, wait_for_port
from support.flood import fetch_all
from support.locks import lock_holder
from support.metrics import sample
from support.processes import PYTHONHOSTED, spawn, started, wait_until
from support.stats_warehouse import (
    BUILT_FOR,
    NO_PREWARM,
    TODAY,
    YESTERDAY,
    Warehouse,
    add_batch,
    admitting,
    at,
    build,
    event_lines,
    publish,
)

RECENT = "/api/packages/demo-pkg/recent?period=day"


def test_a_publish_changes_the_answer_and_its_etag(tmp_path: Path) -> None:
    warehouse = build(tmp_path, event_lines())
    with running(build_app(warehouse.settings)) as base:
        first = httpx.get(base + RECENT)
        assert first.json()["data"] == {"last_day": 3}
        assert httpx.get(base + RECENT).headers["etag"] == first.headers["etag"]
        add_batch(warehouse, 1000, 2)
        publish(warehouse)
        second = httpx.get(base + RECENT, headers={"if-none-match": first.headers["etag"]})
        assert second.status_code == 200
        assert second.json()["data"] == {"last_day": 5}
        assert second.headers["etag"] != first.headers["etag"]
        metrics = httpx.get(base + "/metrics").text
        assert "stats_web_cache_hits_total 1.0" in metrics


def _publisher(warehouse: Warehouse) -> subprocess.Popen[bytes]:
    return spawn(
        [sys.executable, "-m", "pythonhosted", "linehaul", "publish", "--once",
         "--results", warehouse.results, "--warehouse", f"duckdb://{warehouse.path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def _hammer(base: str, stop: threading.Event, seen: list[int], failures: list[str]) -> None:
    with httpx.Client() as client:
        n = 0
        while not stop.is_set():
            n += 1
            # A new query string each time: every request reads the warehouse.
            answer = client.get(f"{base}/api/packages/demo-pkg/overall?start=2000-01-01&n={n}")
            if answer.status_code != 200:
                failures.append(f"{answer.status_code} {answer.text}")
                continue
            rows = answer.json()["data"]
            seen.append(sum(r["downloads"] for r in rows if r["category"] == "with_mirrors"))


@pytest.mark.long
@pytest.mark.parametrize("where", ["another process", "this process"])
def test_answers_stay_right_while_publish_writes(tmp_path: Path, where: str) -> None:
    warehouse = build(tmp_path, event_lines())
    before = 9  # demo-pkg with mirrors, up to yesterday (EVENTS)
    rounds, per_round = 4, 300
    seen: list[int] = []
    failures: list[str] = []
    stop = threading.Event()
    with running(build_app(warehouse.settings)) as base:
        readers = [
            threading.Thread(target=_hammer, args=(base, stop, seen, failures)) for _ in range(3)
        ]
        for reader in readers:
            reader.start()
        try:
            for index in range(rounds):
                add_batch(warehouse, 10_000 + index * per_round, per_round)
                if where == "this process":
                    publish(warehouse)
                    continue
                process = _publisher(warehouse)
                try:
                    _, err = process.communicate(timeout=120)
                finally:
                    if process.poll() is None:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait()
                assert process.returncode == 0, err.decode()
        finally:
            stop.set()
            for reader in readers:
                reader.join(timeout=60)
        final = httpx.get(f"{base}/api/packages/demo-pkg/overall?mirrors=true").json()
    assert failures == []
    total = before + rounds * per_round
    assert sum(r["downloads"] for r in final["data"]) == total
    assert len(seen) > rounds
    # Every answer is a whole number of published batches, and none goes backwards per reader.
    assert {(count - before) % per_round for count in seen} == {0}
    assert max(seen) <= total


def test_rate_limit_budgets_per_client(tmp_path: Path) -> None:
    warehouse = build(tmp_path, event_lines())
    options = {"rate_limit": 3, "rate_window": 60.0, "rate_limit_loopback": True}
    settings = warehouse.settings.model_copy(
        update={"stats_web": warehouse.settings.stats_web.model_copy(update=options)}
    )
    with running(build_app(settings)) as base:
        answers = [httpx.get(base + RECENT) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert {a.headers["ratelimit-policy"] for a in answers} == {'"default";q=3;w=60'}
        remaining = [a.headers["ratelimit"].split(";")[1] for a in answers]
        assert remaining == ["r=2", "r=1", "r=0", "r=0"]
        assert 1 <= int(answers[3].headers["retry-after"]) <= 60
        assert answers[3].json()["error"].startswith("too many requests")
        # X-Forwarded-For is not believed unless configured: still the same client.
        spoofed = httpx.get(base + RECENT, headers={"x-forwarded-for": "203.0.113.9"})
        assert spoofed.status_code == 429
        assert httpx.get(base + "/static/style.css").status_code == 200  # assets: no budget
    trusted = settings.model_copy(
        update={"stats_web": settings.stats_web.model_copy(update={"trust_proxy_headers": True})}
    )
    with running(build_app(trusted)) as base:
        for address in ("203.0.113.1", "203.0.113.2"):
            codes = [
                httpx.get(base + RECENT, headers={"x-forwarded-for": f"{address}, 10.0.0.1"})
                for _ in range(4)
            ]
            assert [a.status_code for a in codes] == [200, 200, 200, 429]
    default = Settings(data_dir=tmp_path).stats_web
    limiter = RateLimiter(default.rate_limit, default.rate_window)
    assert limiter.check("127.0.0.1") is None and limiter.check("::1") is None
    decision = limiter.check("198.51.100.7")
    assert decision is not None and decision.allowed


def test_a_client_has_one_budget_whatever_the_workers(tmp_path: Path) -> None:
    """`stats-web serve --workers 2`: each worker counted its own requests, so a client got a
    budget per worker (new connections land on either). The workers share the counts."""
    warehouse = build(tmp_path, event_lines())
    bind = Bind("127.0.0.1", free_port())
    argv = [*PYTHONHOSTED, "stats-web", "serve", "--workers", "2", "--bind", str(bind)]
    env = {
        **os.environ,
        **NO_PREWARM,
        **BUILT_FOR,
        "PYTHONHOSTED_STATS_WEB__WAREHOUSE": f"duckdb://{warehouse.path}",
        "PYTHONHOSTED_STATS_WEB__RATE_LIMIT": "5",
        "PYTHONHOSTED_STATS_WEB__RATE_LIMIT_LOOPBACK": "true",
    }
    with started(argv, env=env, cwd=tmp_path):
        wait_for_port(bind, timeout=60)
        statuses = [httpx.get(bind.url() + RECENT).status_code for _ in range(20)]
    assert statuses == [200] * 5 + [429] * 15


def test_rate_limit_table_is_bounded() -> None:
    """20,000 clients in a table of 1,024 places: its memory never grows; a client's budget
    holds while its window runs, and a window that ended frees its place."""
    table = ClientTable(slots=1024)
    limiter = RateLimiter(5, 60.0, table=table)
    steady = "198.51.100.1"
    for n in range(20_000):
        limiter.check(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", now=float(n))
        if n < 5:
            assert limiter.check(steady, now=float(n)).allowed  # type: ignore[union-attr]
    later = limiter.check("198.51.100.2", now=30_000.0)
    assert later is not None and later.allowed
    for _ in range(5):
        limiter.check("198.51.100.3", now=30_000.0)
    assert not limiter.check("198.51.100.3", now=30_001.0).allowed  # type: ignore[union-attr]


def test_answer_cache_is_bounded_in_entries_and_bytes() -> None:
    cache = AnswerCache(max_entries=100, max_bytes=10_000)
    for n in range(5000):
        cache.put((n,), Answer(200, b"x" * (n % 300), b"text/plain", '"e"', 1))
        assert len(cache) <= 100 and cache.bytes <= 10_000
    assert cache.get((4999,), 1) is not None
    assert cache.get((4999,), 2) is None  # another data version: not served
    cache.put(("huge",), Answer(200, b"x" * 20_000, b"text/plain", '"e"', 1))
    assert cache.get(("huge",), 1) is None


def test_flooding_unique_urls_keeps_the_cache_bounded(tmp_path: Path) -> None:
    warehouse = build(tmp_path, event_lines())
    settings = warehouse.settings.model_copy(
        update={
            "stats_web": warehouse.settings.stats_web.model_copy(
                update={"cache_entries": 50, "cache_bytes": 20_000}
            )
        }
    )
    app = build_app(settings)
    with running(app) as base, httpx.Client() as client:
        for n in range(400):
            assert client.get(f"{base}/api/v1/top?limit={n % 100 + 1}&x={n}").status_code == 200
    assert len(app.cache) <= 50 and app.cache.bytes <= 20_000


def test_long_query_strings_count_against_the_cache_budget(tmp_path: Path) -> None:
    """Each cached answer is charged for its key: 150 answers of a few hundred bytes under
    6 KB queries (search terms of underscores, which normalise to a short prefix) fill a
    500 KB budget and push the first answer out, where counting only bodies kept all of them
    (and 230 MB of keys for 64 MB)."""
    warehouse = build(tmp_path, event_lines())
    settings = warehouse.settings.model_copy(
        update={
            "stats_web": warehouse.settings.stats_web.model_copy(update={"cache_bytes": 500_000})
        }
    )

    def computed(base: str) -> float:
        return sample(base, "stats_web_answers_computed_total")

    with running(build_app(settings)) as base, httpx.Client() as client:
        assert client.get(base + "/api/v1/top").status_code == 200
        assert client.get(base + "/api/v1/top").status_code == 200  # cached
        before = computed(base)
        padding = "_" * 6000
        for n in range(150):
            answer = client.get(f"{base}/api/v1/search?q={padding}{n}")
            assert answer.json() == {"q": f"-{n}", "projects": []}
        assert computed(base) == before + 150
        assert client.get(base + "/api/v1/top").status_code == 200
        assert computed(base) == before + 151  # pushed out: computed again


def test_parameters_no_route_reads_neither_compute_nor_evict(tmp_path: Path) -> None:
    """A cache-buster (``?_=...``), a link's ``utm_source``, a repeated or blank parameter:
    none can change an answer, so none makes a new computation or a new cache entry; with
    a budget that holds two answers, a flood of them leaves both cached."""
    warehouse = build(tmp_path, event_lines())
    settings = warehouse.settings.model_copy(
        update={"stats_web": warehouse.settings.stats_web.model_copy(update={"cache_bytes": 6_000})}
    )
    with running(build_app(settings)) as base, httpx.Client() as client:
        recent = client.get(base + RECENT)
        top = client.get(base + "/api/v1/top")
        computed = sample(base, "stats_web_answers_computed_total")
        for n in range(1000):
            busted = client.get(f"{base}{RECENT}&_={n}&utm_source=x{n}&period=&period=day")
            assert (busted.content, busted.headers["etag"]) == (
                recent.content,
                recent.headers["etag"],
            )
        again = client.get(f"{base}/api/v1/top?limit=&x={'y' * 5000}")
        assert again.content == top.content
        assert sample(base, "stats_web_answers_computed_total") == computed
        # what a route reads still makes its own answer
        assert client.get(base + "/api/packages/demo-pkg/recent?period=week").status_code == 200
        assert sample(base, "stats_web_answers_computed_total") == computed + 1


def test_yesterday_is_the_last_complete_day(tmp_path: Path) -> None:
    warehouse = build(tmp_path, event_lines())
    with running(build_app(warehouse.settings)) as base:
        summary = httpx.get(base + "/api/v1/projects/demo-pkg/summary").json()
    assert summary["last_complete_day"] == YESTERDAY.isoformat()
    assert summary["last_day"] == (YESTERDAY + timedelta(days=1)).isoformat()


def test_an_archived_warehouse_is_served_as_of_its_day(tmp_path: Path) -> None:
    """``stats_web.today``: a copy of the warehouse as it was 100 days ago answers as it did
    then, where the clock's day leaves every download out of the recent periods."""
    then = TODAY - timedelta(days=100)
    hour = at(then, 20)
    archived = build(tmp_path / "archived", event_lines(then), hour=hour, today=then)
    with running(build_app(archived.settings)) as base:
        recent = httpx.get(base + "/api/packages/demo-pkg/recent").json()["data"]
        summary = httpx.get(base + "/api/v1/projects/demo-pkg/summary").json()
    assert recent == {"last_day": 3, "last_week": 5, "last_month": 6}
    assert summary["last_complete_day"] == (then - timedelta(days=1)).isoformat()
    by_clock = archived.settings.stats_web.model_copy(update={"today": None})
    with running(build_app(archived.settings.model_copy(update={"stats_web": by_clock}))) as base:
        recent = httpx.get(base + "/api/packages/demo-pkg/recent").json()["data"]
    assert recent == {"last_day": 0, "last_week": 0, "last_month": 0}


def test_a_burst_for_one_uncached_answer_computes_it_once(warehouse: Warehouse) -> None:
    """A publish makes every cached answer stale at once; the thousand clients of a popular
    badge that ask in that moment share one computation, and all get the same answer."""
    routes = ["/badge/demo-pkg.svg", "/api/packages/demo-pkg/overall", "/packages/demo-pkg"]

    async def burst(url: str) -> list[tuple[int, str]]:
        paths = [route for route in routes for _ in range(100)]
        answers = await fetch_all(url, paths, concurrency=200)
        return [(answer.status, answer.headers["etag"]) for answer in answers]

    with running(build_app(warehouse.settings)) as url:
        answers = asyncio.run(burst(url))
        computed = sample(url, "stats_web_answers_computed_total")
    assert [status for status, _ in answers] == [200] * 300
    assert len({etag for _, etag in answers}) == 3
    assert computed == 3


def test_a_crowd_of_cold_requests_lists_the_stores_once(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every computed answer says how far the data is complete, from a listing of the
    linehaul stores (kept 30 s). 500 clients asking for 500 different answers at once made
    500 listings of both stores before (obstore's blocking pool grew by hundreds of threads
    for local directories; on S3, a LIST request each); now the crowd shares one."""
    listings: list[int] = []
    real = app_module.oldest_in_flight

    async def counted(logs: Store, results: Store) -> datetime | None:
        listings.append(1)
        await asyncio.sleep(0.5)  # a store that takes its time: the crowd arrives meanwhile
        return await real(logs, results)

    monkeypatch.setattr(app_module, "oldest_in_flight", counted)
    paths = [f"/api/packages/unknown-{n}/recent" for n in range(500)]
    with running(build_app(admitting(warehouse.settings, len(paths)))) as url:
        answers = asyncio.run(fetch_all(url, paths, concurrency=500))
        computed = sample(url, "stats_web_answers_computed_total")
    assert [answer.status for answer in answers] == [404] * 500
    assert computed == 500
    assert len(listings) == 1


def in_flight(base: str) -> float:
    return sample(base, "stats_web_requests_in_flight")


def test_answers_for_clients_that_left_are_not_computed(tmp_path: Path) -> None:
    """300 clients ask for 300 different pages while another process writes the warehouse
    (each question waits for the write), and give up. Before, every one of their answers was
    computed anyway once the write was done, and a client coming after them waited behind
    all 300 (at production size: 1,000 clients gone after 5 s, the next one waited 88 s);
    now only those already being computed are finished."""
    warehouse = build(tmp_path, event_lines(), max_pending=300)  # none shed
    intent = intent_file(warehouse.path)
    with running(build_app(warehouse.settings)) as base, httpx.Client(timeout=60) as client:
        assert client.get(base + "/packages/demo-pkg").status_code == 200  # version read
        bind = Bind.parse(base.removeprefix("http://"))
        lock_holder(intent, write_pid=True)  # a writer in another process: questions wait
        try:
            crowd = [socket.create_connection((bind.host, bind.port), 10) for _ in range(300)]
            try:
                for n, sock in enumerate(crowd):
                    sock.sendall(f"GET /packages/p-{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                wait_until(lambda: in_flight(base) == 301)  # 300 waiting, and this scrape
            finally:
                for sock in crowd:
                    sock.close()
            wait_until(lambda: in_flight(base) == 1)  # the server saw them go
        finally:
            intent.unlink()
        assert client.get(base + "/packages/demo-pkg?range=all").status_code == 200
        computed = sample(base, "stats_web_answers_computed_total")
    # 2 for the clients that stayed, plus at most the questions that were already in worker
    # threads when the crowd left (the stats web's own, at most 32); before: 302
    assert computed <= 2 + 32


def test_a_file_change_that_is_no_publish_keeps_the_cached_answers(tmp_path: Path) -> None:
    """The warehouse file changes without its data changing (a checkpoint, a publish that
    has written blocks but not committed): one shared read of the data version, then the
    cached answers are served again, none computed anew."""
    warehouse = build(tmp_path, event_lines())
    with running(build_app(warehouse.settings)) as base, httpx.Client() as client:
        first = client.get(base + RECENT)
        computed = sample(base, "stats_web_answers_computed_total")
        hits = sample(base, "stats_web_cache_hits_total")
        info = warehouse.path.stat()
        os.utime(warehouse.path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
        again = [client.get(base + RECENT) for _ in range(20)]
        assert [a.headers["etag"] for a in again] == [first.headers["etag"]] * 20
        assert sample(base, "stats_web_answers_computed_total") == computed
        assert sample(base, "stats_web_cache_hits_total") == hits + 20
        add_batch(warehouse, 2000, 2)
        publish(warehouse)  # a publish still changes the answer at once
        assert client.get(base + RECENT).json()["data"] == {"last_day": 5}
        assert sample(base, "stats_web_answers_computed_total") == computed + 1


def test_cached_answers_are_out_of_the_garbage_collectors_sight() -> None:
    """A full collection runs on the event loop and walks every tracked object: 20,000
    cached answers (the default budget), keyed as requests key them, add none."""
    cache = AnswerCache(max_entries=20_000, max_bytes=1 << 30)
    day = YESTERDAY
    gc.collect()
    before = len(gc.get_objects())
    for n in range(20_000):
        key = (f"/api/packages/project-{n}/recent", b"period=day", day)
        cache.put(key, Answer(200, b'{"data": %d}' % n, b"application/json", f'"{n}"', 7))
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert cache.get(("/api/packages/project-7/recent", b"period=day", day), 7) == Answer(
        200, b'{"data": 7}', b"application/json", '"7"', 7
    )


def test_the_server_freezes_what_it_holds_at_start_and_thaws_it_at_stop(
    warehouse: Warehouse,
) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    with running(build_app(warehouse.settings)) as base:
        assert httpx.get(base + RECENT).status_code == 200
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_a_warehouse_of_an_older_release_says_so_until_a_publish_upgrades_it(
    tmp_path: Path,
) -> None:
    """A warehouse written before ``file_downloads.response`` existed: every answer was a 500
    with a DuckDB binder traceback in the log. Now a 503 that names what is missing and how
    to upgrade; the next publish adds the column, and the answers come back."""
    warehouse = build(tmp_path, event_lines())
    with duckdb.connect(str(warehouse.path)) as con:
        con.execute("ALTER TABLE file_downloads DROP COLUMN response")
    with running(build_app(warehouse.settings)) as base:
        old = httpx.get(base + RECENT)
        assert (old.status_code, old.json()) == (
            503,
            {
                "error": "warehouse unavailable: the warehouse has no file_downloads.response"
                " yet (made by an older release): run 'pythonhosted linehaul rollup"
                " --rebuild' or let publish load once"
            },
        )
        add_batch(warehouse, 1000, 2)
        publish(warehouse)
        upgraded = httpx.get(base + RECENT)
        assert (upgraded.status_code, upgraded.json()["data"]) == (200, {"last_day": 5})
