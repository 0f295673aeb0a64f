"""``distribution_metadata``: the rows uploads queued, into the warehouse, once each.

Each publish pass drains the queue in the files store (``metadata-queue/``, written by
``files upload``) when it knows that store (``files.primary``): a batch of rows
goes to the warehouse in one call, which adds those whose filename it does not hold yet, and
only then are the batch's queue objects deleted. A publish killed between the two finds them
again and the warehouse adds nothing for them; a row is never lost either, as the queue
object outlives the load. ``linehaul metadata`` does the same on demand, and with
``--backfill`` builds the rows of every file a store holds that the warehouse lacks (stores
uploaded to before there was a queue).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pythonhosted.storage import Store
from pythonhosted.threads import background
from pythonhosted.warehouse import Warehouse
from pythonhosted.warehouse.metadata import backfill_rows, queued

log = logging.getLogger(__name__)


@dataclass
class MetadataSummary:
    added: int = 0  # rows the warehouse took
    present: int = 0  # rows of files it held already (a retry, a re-upload), not added

    def line(self) -> str:
        return f"{self.added} distribution rows added, {self.present} already there"


async def load_queued(
    uploads: Store, warehouse: Warehouse, *, batch: int, stop: asyncio.Event | None = None
) -> MetadataSummary:
    """Drain the upload queue into ``warehouse``, ``batch`` rows at a time (a set ``stop``
    ends it after the batch under way)."""
    summary = MetadataSummary()
    while stop is None or not stop.is_set():
        found = await queued(uploads, batch)
        if not found:
            break
        added = await background(warehouse.add_distributions, [row for _, row in found])
        summary.added += len(added)
        summary.present += len(found) - len(added)
        for key, _ in found:
            await uploads.delete(key)
        if len(found) < batch:
            break
    return summary


async def backfill(uploads: Store, warehouse: Warehouse) -> MetadataSummary:
    """Add the row of every file in ``uploads``'s catalog that the warehouse lacks, a
    project at a time."""
    summary = MetadataSummary()
    known = await background(warehouse.distribution_files)
    async for rows in backfill_rows(uploads, known.__contains__):
        added = await background(warehouse.add_distributions, rows)
        summary.added += len(added)
        summary.present += len(rows) - len(added)
    return summary
