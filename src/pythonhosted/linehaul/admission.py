"""How many log objects one ingest worker has under way at once.

An object costs ingest about seventeen store round trips however small it is (claim, read,
renewals, result puts, delete, release), each a wait on the store: on S3 tens of
milliseconds, so a pass over ten thousand small objects taken one at a time waits hours,
and even a local directory's pass waited out two thirds of its wall time. Taking several at
once overlaps those waits. Memory is what bounds it: an object holds up to a part of results
(:data:`~.batch.PART_BYTES`) however large it is, and a small one about its own size a few
times over, plus ISA-L's inflate state (85 KiB). So objects are admitted by weight, their
compressed size, against a budget: small ones come in by the several (at most ``limit`` at
once), and one at least the budget's size only alone, so a pass never holds more than one
large object would. Admission is first come, first served: a large object waits for those
under way to finish, and the ones after it wait behind it, so it is not passed over for the
rest of the pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

BUDGET_BYTES = 4 << 20
"""Compressed bytes under way at once (a log object inflates about tenfold, and its results
weigh about as much again: this is about one part of results)."""


class Admission:
    """Admits objects by weight, in arrival order: up to ``limit`` at once, their weights
    (sizes, at most ``budget`` each) within ``budget``, or one alone."""

    def __init__(self, limit: int, budget: int = BUDGET_BYTES) -> None:
        self.limit = limit
        self.budget = budget
        self.held = 0  # weight under way
        self.running = 0
        self._next = 0  # the next ticket to hand out
        self._serving = 0  # the ticket admitted next
        self._gave_up: set[int] = set()  # tickets whose holders stopped waiting
        self._changed = asyncio.Condition()

    def _advance(self) -> None:
        """Pass over tickets given up, and wake the waiters to check their turn."""
        while self._serving in self._gave_up:
            self._gave_up.remove(self._serving)
            self._serving += 1
        self._changed.notify_all()

    def _fits(self, ticket: int, weight: int) -> bool:
        if ticket != self._serving:
            return False
        if self.running == 0:
            return True
        return self.running < self.limit and self.held + weight <= self.budget

    @asynccontextmanager
    async def admit(self, size: int) -> AsyncIterator[None]:
        """Wait for this object's turn and room for it; hold its room while the block runs."""
        weight = min(max(size, 1), self.budget)
        async with self._changed:
            ticket = self._next
            self._next += 1
            try:
                await self._changed.wait_for(lambda: self._fits(ticket, weight))
            except BaseException:  # cancelled while waiting: the ones behind must not wait
                self._gave_up.add(ticket)
                self._advance()
                raise
            self._serving += 1
            self._advance()
            self.held += weight
            self.running += 1
        try:
            yield
        finally:
            async with self._changed:
                self.held -= weight
                self.running -= 1
                self._changed.notify_all()
