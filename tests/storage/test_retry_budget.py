"""A store that fails every read is not asked twice for each: the retry budget.

obstore retries a read answered 500; against a store that answers nothing else, that doubled
the requests it got from every reader (the docs, the index, the files edge without an
archive). The store here is moto behind a proxy answering S3's 500 to GETs until told
otherwise (``support.s3_failures``); the reads go through the storage API.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from pythonhosted.storage import NotFound, Store, StoreUnavailable, Timeouts, open_store
from pythonhosted.storage.retrybudget import CAPACITY, RETRY_COST
from pythonhosted.web.server import running
from support.s3_failures import FailingS3, object_path, through

OUTAGE = 10**9  # failures per object: every GET, until the test lowers it
SPENT = CAPACITY // RETRY_COST  # failed reads with their retry before the budget is spent
# reads at once, so the retries' back-off overlaps: each read of a round finds the budget as
# the rounds before left it
BATCH = 10


async def read(store: Store, answered: bool) -> None:
    """One read of the object: its bytes when the store ``answered``, else a failure."""
    if answered:
        assert await store.get_bytes("object") == b"data"
    else:
        with pytest.raises(StoreUnavailable):
            await store.get_bytes("object")


def test_an_outage_gets_one_request_a_read_once_the_budget_is_spent_and_retries_come_back(
    moto_endpoint: str, s3_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(open_store(s3_url).put("object", b"data"))
    path = object_path(s3_url, "object")
    failing = FailingS3(moto_endpoint, "GET", "refused", failures=OUTAGE)
    with running(failing) as proxy, caplog.at_level(logging.WARNING):
        store_url = through(proxy, s3_url)

        async def outage_then_recovery() -> list[int]:
            store = open_store(store_url, Timeouts.serving(5.0, 5.0))
            counts = []
            phases = ((OUTAGE, SPENT // BATCH + 5, BATCH), (0, RETRY_COST, 1), (OUTAGE, 2, 1))
            for failures, rounds, reads in phases:
                failing.failures = failures
                for _ in range(rounds):
                    before = failing.seen[path]
                    await asyncio.gather(*(read(store, failures == 0) for _ in range(reads)))
                    counts.append(failing.seen[path] - before)
            return counts

        counts = asyncio.run(outage_then_recovery())
    # retried while the budget lasts, then once each; five answered reads buy one retry again
    assert counts == [2 * BATCH] * (SPENT // BATCH) + [BATCH] * 5 + [1] * RETRY_COST + [2, 1]
    spent = [r.getMessage() for r in caplog.records if "retry budget spent" in r.getMessage()]
    assert spent == [
        f"{store_url.split('?')[0]} (endpoint {proxy}): its reads keep failing after their "
        "retries; they are tried once each until it answers again (retry budget spent)"
    ]


def test_missing_objects_are_answers_and_spend_nothing(moto_endpoint: str, s3_url: str) -> None:
    path = object_path(s3_url, "missing")
    failing = FailingS3(moto_endpoint, "GET", "refused", failures=0)
    with running(failing) as proxy:
        store = open_store(through(proxy, s3_url), Timeouts.serving(5.0, 5.0))

        async def reads() -> int:
            for _ in range(SPENT + 10):
                with pytest.raises(NotFound):
                    await store.get_bytes("missing")
            failing.failures = OUTAGE
            before = failing.seen[path]
            with pytest.raises(StoreUnavailable):
                await store.get_bytes("missing")
            return failing.seen[path] - before

        assert asyncio.run(reads()) == 2  # still retried
