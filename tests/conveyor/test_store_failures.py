"""Docs readers ride over the 500s S3 answers now and then; a store that hangs costs them one
timeout, not two.

conveyor has no other store to fall back to, so it retries a quick failure once, as S3 asks
its clients to; a read that timed out is not tried again (a hanging store would cost every
reader twice the timeout). The store is moto behind a proxy that fails each object's GETs
(``support.s3_failures``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.storage.breaker import TRIP_AFTER
from pythonhosted.web.server import running
from support.conveyor import ConveyorFactory
from support.flood import fetch_all
from support.processes import wait_until
from support.s3_failures import FailingS3, object_path, through

PAGES = 40
POINTER = ".sites/proj/current"


def uploaded_site(tmp_path: Path, s3_url: str) -> dict[str, bytes]:
    """A site of ``PAGES`` pages uploaded as ``proj`` straight to moto."""
    files = {f"p{number:02d}.html": f"page {number}".encode() for number in range(PAGES)}
    (tmp_path / "site").mkdir()
    for name, data in files.items():
        (tmp_path / "site" / name).write_bytes(data)
    result = CliRunner().invoke(
        main, ["docs", "upload", "--store", s3_url, "proj", str(tmp_path / "site")]
    )
    assert result.exit_code == 0, result.output
    return files


def test_each_read_answered_500_once_is_retried_and_every_page_served(
    tmp_path: Path, moto_endpoint: str, s3_url: str, conveyor: ConveyorFactory
) -> None:
    site = uploaded_site(tmp_path, s3_url)
    failing = FailingS3(moto_endpoint, "GET", "refused")
    with running(failing) as proxy, conveyor(docs=through(proxy, s3_url)) as base:
        answers = asyncio.run(fetch_all(base, [f"/proj/{name}" for name in site]))
    assert [(answer.status, answer.body) for answer in answers] == [
        (200, data) for data in site.values()
    ]
    # the pointer and each page: answered 500 once, then read (the pointer again each
    # POINTER_TTL the pages take: a loaded run read it a third time)
    assert failing.seen[object_path(s3_url, POINTER)] >= 2
    pages = {path: count for path, count in failing.seen.items() if path.endswith(".html")}
    assert sorted(pages.values()) == [2] * PAGES


def test_a_store_that_keeps_answering_500_is_tried_twice_then_503(
    tmp_path: Path, moto_endpoint: str, s3_url: str, conveyor: ConveyorFactory
) -> None:
    uploaded_site(tmp_path, s3_url)
    failing = FailingS3(moto_endpoint, "GET", "refused", failures=100)
    with running(failing) as proxy, conveyor(docs=through(proxy, s3_url)) as base:
        answers = asyncio.run(fetch_all(base, ["/proj/p00.html"]))
    assert [(answer.status, answer.body) for answer in answers] == [(503, b"Storage unavailable\n")]
    assert dict(failing.seen) == {object_path(s3_url, POINTER): 2}


def test_a_read_that_times_out_is_not_tried_again(
    tmp_path: Path, moto_endpoint: str, s3_url: str, conveyor: ConveyorFactory
) -> None:
    uploaded_site(tmp_path, s3_url)
    failing = FailingS3(moto_endpoint, "GET", "hangs")
    with running(failing) as proxy:
        store = through(proxy, s3_url)
        with conveyor(docs=store, store_read_timeout=1.0) as base:
            answers = asyncio.run(fetch_all(base, ["/proj/p00.html"]))
    assert [(answer.status, answer.body) for answer in answers] == [(503, b"Storage unavailable\n")]
    assert dict(failing.seen) == {object_path(s3_url, POINTER): 1}


def test_a_store_that_hangs_fails_readers_at_once_after_reads_time_out_in_a_row(
    tmp_path: Path, moto_endpoint: str, s3_url: str, conveyor: ConveyorFactory
) -> None:
    """Each reader of a hanging store waited the whole read timeout for its 503 (10 s by
    default), every one of them holding a connection. After ``TRIP_AFTER`` reads timed out
    in a row, readers get their 503 without a request to the store, and one read a
    ``COOLDOWN`` tries it again: once it answers, pages are served again."""
    site = uploaded_site(tmp_path, s3_url)
    failing = FailingS3(moto_endpoint, "GET HEAD", "hangs", failures=10**9)
    with (
        running(failing) as proxy,
        conveyor(docs=through(proxy, s3_url), store_read_timeout=1.0) as base,
    ):
        timed_out = asyncio.run(fetch_all(base, ["/proj/p00.html"] * TRIP_AFTER, concurrency=1))
        asked = failing.seen.total()
        at_once = asyncio.run(fetch_all(base, [f"/other-{n}/index.html" for n in range(20)]))
        asked_by_the_rest = failing.seen.total() - asked
        failing.failures = 0
        served = wait_until(lambda: _served(base + "/proj/p01.html"))
    assert [answer.status for answer in timed_out] == [503] * TRIP_AFTER
    assert [(answer.status, answer.body) for answer in at_once] == [
        (503, b"Storage unavailable\n")
    ] * 20
    # 20 readers of other projects, none of whom asked the store (or one trial, if a loaded
    # run took past COOLDOWN)
    assert asked_by_the_rest <= 1
    assert served == site["p01.html"]


def _served(url: str) -> bytes | None:
    answer = httpx.get(url)
    return answer.content if answer.status_code == 200 else None
