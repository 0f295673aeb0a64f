"""Past ``stats_web.max_pending`` cold answers in flight, a cold request is answered 503 at
once (with ``Retry-After``, in its route's kind) instead of queueing; cached answers, 304s,
requests that join a computation in flight, ``/_health`` and ``/metrics`` are never shed.

Each question here waits while a writer in another process announces itself (the intent
file beside the warehouse): the computations admitted stay in flight until the test lets
them go, so which requests are shed is certain, not a race with the machine's speed.
"""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

from pythonhosted.stats_web import badges, build_app
from pythonhosted.warehouse.access import intent_file
from pythonhosted.web.server import Bind, free_port, running, wait_for_port
from support.flood import Answer, fetch_all
from support.locks import lock_holder
from support.metrics import sample
from support.processes import PYTHONHOSTED, started, wait_until
from support.stats_warehouse import BUILT_FOR, NO_PREWARM, Warehouse, build, event_lines

CROWD = 2_000
BOUND = 4
BUSY_JSON = b'{"error":"busy: too many answers are being computed; retry in 2 s"}'
MONTH = "6/month"  # demo-pkg's downloads in the last 30 complete days, mirrors left out


def shields(label: str) -> bytes:
    return orjson.dumps({"schemaVersion": 1, "label": label, "message": MONTH, "color": "007ec6"})


def crowd_paths(count: int) -> list[str]:
    """Distinct cold questions: shields.io JSON and SVG badges, each with its own label."""
    return [
        f"/api/v1/projects/demo-pkg/shields?label=j-{n}"
        if n % 2
        else f"/badge/demo-pkg.svg?label=s-{n}"
        for n in range(count)
    ]


def expected_body(path: str) -> tuple[bytes, bytes]:
    """The 200 body and content type of a :func:`crowd_paths` question."""
    label = path.rsplit("label=", 1)[1]
    if path.startswith("/badge/"):
        return badges.svg(label, MONTH, badges.COLORS["blue"], "flat"), b"image/svg+xml"
    return shields(label), b"application/json"


def busy_body(path: str) -> tuple[bytes, bytes]:
    """The 503 body and content type of a shed :func:`crowd_paths` question."""
    if path.startswith("/badge/"):
        label = path.rsplit("label=", 1)[1]
        return badges.svg(label, "busy", badges.COLORS["lightgrey"], "flat"), b"image/svg+xml"
    return BUSY_JSON, b"application/json"


@contextmanager
def writer_announced(warehouse: Warehouse) -> Iterator[None]:
    """Another process announces it writes the warehouse: questions wait until the block
    ends (up to ``read_wait``)."""
    intent = intent_file(warehouse.path)
    writer = lock_holder(intent, write_pid=True)
    try:
        yield
    finally:
        intent.unlink(missing_ok=True)
        writer.kill()
        writer.wait()


def all_at_once(base: str, paths: list[str]) -> list[Answer]:
    """Every path asked at once, each on a connection of its own."""
    return asyncio.run(fetch_all(base, paths, concurrency=len(paths), timeout=300))


def shed(base: str) -> float:
    return sample(base, "stats_web_shed_total")


def computing(base: str) -> float:
    return sample(base, "stats_web_answers_computing")


def assert_shed(answer: Answer, body: bytes, kind: bytes) -> None:
    assert (answer.status, answer.body) == (503, body)
    assert answer.headers["content-type"] == kind.decode()
    assert answer.headers["retry-after"] == "2"
    assert answer.headers["cache-control"] == "no-store"


def test_a_crowd_of_distinct_cold_questions_past_the_bound_is_shed_at_once(
    tmp_path: Path,
) -> None:
    """2,000 clients ask 2,000 distinct cold badges of ``stats-web serve --max-pending 4``
    at once, and 4 more distinct cold pages. Before, all 2,000 waited in one queue (and any
    crowd grew it without bound); now 4 of each lane (quick badges, long pages) are computed
    and 1,996 are told at once to come back, in their route's kind, while cached answers,
    304s and ``/_health`` go on being served; afterwards the server answers as before."""
    warehouse = build(tmp_path, event_lines())
    bind = Bind("127.0.0.1", free_port())
    base = bind.url()
    argv = [
        *[*PYTHONHOSTED, "stats-web", "serve", "--warehouse", f"duckdb://{warehouse.path}"],
        *["--bind", str(bind), "--max-pending", str(BOUND)],
    ]
    env = {**os.environ, "PYTHONHOSTED_STATS_WEB__READ_WAIT": "300", **NO_PREWARM, **BUILT_FOR}
    paths = crowd_paths(CROWD)
    pages = [f"/packages/demo-pkg?range={span}" for span in ("30", "90", "180", "365")]
    with started(argv, env=env, cwd=tmp_path), httpx.Client(base_url=base, timeout=60) as client:
        wait_for_port(bind, timeout=60)
        warm = client.get("/api/packages/demo-pkg/recent")  # cached, and the version read
        assert warm.status_code == 200
        with ThreadPoolExecutor(2) as pool, writer_announced(warehouse):
            long = pool.submit(all_at_once, base, pages)
            wait_until(lambda: computing(base) == BOUND, timeout=120)
            crowd = pool.submit(all_at_once, base, paths)
            wait_until(lambda: shed(base) == CROWD - BOUND, timeout=120)
            assert computing(base) == 2 * BOUND
            # the bound is full: what needs no computation is served all the same
            assert client.get("/_health").status_code == 200
            again = client.get("/api/packages/demo-pkg/recent")
            assert (again.status_code, again.content) == (200, warm.content)
            etag = {"if-none-match": warm.headers["etag"]}
            assert client.get("/api/packages/demo-pkg/recent", headers=etag).status_code == 304
            page = client.get("/packages/other")  # cold: shed as a page
            assert page.status_code == 503
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert page.headers["retry-after"] == "2"
            assert b"<h1>Busy</h1>" in page.content
            head = client.head("/api/v1/projects/other/shields")
            assert (head.status_code, head.content) == (503, b"")
            assert not crowd.done()  # the 4 admitted still wait for the writer
        assert [answer.status for answer in long.result()] == [200] * BOUND
        answers = crowd.result()
        assert len(answers) == CROWD
        assert [answer.status for answer in answers].count(200) == BOUND
        for path, answer in zip(paths, answers, strict=True):
            if answer.status == 200:
                body, kind = expected_body(path)
                assert answer.body == body
                assert answer.headers["content-type"] == kind.decode()
            else:
                assert_shed(answer, *busy_body(path))
        badge = ET.fromstring(busy_body(paths[0])[0])  # a valid SVG a browser draws
        assert badge.tag == "{http://www.w3.org/2000/svg}svg"
        assert shed(base) == CROWD - BOUND + 2  # the page and the HEAD
        wait_until(lambda: computing(base) == 0)
        # back to normal: a question shed in the crowd is answered now
        shed_path = next(
            path for path, answer in zip(paths, answers, strict=True) if answer.status == 503
        )
        fresh = client.get(shed_path)
        assert (fresh.status_code, fresh.content) == (200, expected_body(shed_path)[0])
        assert client.get("/packages/other").status_code == 200


def test_cached_and_coalesced_answers_are_never_shed(tmp_path: Path) -> None:
    """With room for one computation: 500 requests for one cold answer at once share it,
    none shed, though a different cold question meanwhile is; once cached, 500 more are
    served from the cache, none shed."""
    warehouse = build(tmp_path, event_lines(), max_pending=1, read_wait=300)
    path = "/api/packages/demo-pkg/overall?mirrors=false"
    with running(build_app(warehouse.settings)) as base, httpx.Client(timeout=60) as client:
        assert client.get(base + "/api/packages/other/recent").status_code == 200  # version read
        with ThreadPoolExecutor(1) as pool, writer_announced(warehouse):
            burst = pool.submit(all_at_once, base, [path] * 500)
            wait_until(lambda: sample(base, "stats_web_requests_in_flight") == 501)
            assert computing(base) == 1
            other = client.get(base + "/api/packages/demo-pkg/recent")
            assert (other.status_code, other.content) == (503, BUSY_JSON)
        answers = burst.result()
        assert {(answer.status, answer.body) for answer in answers} == {
            (200, client.get(base + path).content)
        }
        cached = asyncio.run(fetch_all(base, [path] * 500, concurrency=500))
        assert [answer.status for answer in cached] == [200] * 500
        assert shed(base) == 1
        assert sample(base, "stats_web_answers_computed_total") == 2
