"""A store's retry budget: reads retried while most of them are answered, not through an outage.

obstore retries a failed request by itself (:attr:`Timeouts.retries`), which is right for the
500 S3 answers now and then and wrong for a store that fails everything: every read then costs
it two requests (four at a command's three retries), doubling the load on a store already
failing and keeping each reader waiting for both. As the AWS SDKs' standard retry mode does
with its retry quota, a read that fails after its retries spends ``RETRY_COST`` tokens of
``CAPACITY``, a read the store answered (an object, or "no such object") earns one back, and
while fewer than ``RETRY_COST`` are left reads go to a twin of the store that does not retry.
So a store failing everything gets about one request per read after its first
``CAPACITY // RETRY_COST`` failures, and one in a hundred reads failing never empties it.

Per store and process, as the SDKs keep one per client; writes keep their retries (a
command's upload, the event log's batches), since what floods a failing store is readers.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

CAPACITY = 500  # the AWS SDKs' initial retry quota
RETRY_COST = 5  # their cost of a retry after a 5xx or a refused connection
WARN_EVERY = 60.0  # seconds: a store half failing spends and earns its budget all the time


class RetryBudget:
    """Tokens for retries, kept without a lock: a store read from several threads at once
    only blurs the count by a token or two."""

    def __init__(self, label: str, capacity: int = CAPACITY, cost: int = RETRY_COST) -> None:
        self.label = label
        self.capacity = capacity
        self.cost = cost
        self.tokens = capacity
        self._warned = -WARN_EVERY

    @property
    def allows(self) -> bool:
        """Whether a read may be retried now."""
        return self.tokens >= self.cost

    def failed(self, retried: bool) -> None:
        """A read failed after its tries; ``retried``: it went to the retrying store."""
        if not retried:
            return
        self.tokens = max(0, self.tokens - self.cost)
        now = time.monotonic()
        if not self.allows and now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "%s: its reads keep failing after their retries; they are tried once each "
                "until it answers again (retry budget spent)",
                self.label,
            )

    def answered(self) -> None:
        """The store answered a read (an object or a 404)."""
        if self.tokens < self.capacity:
            self.tokens += 1
