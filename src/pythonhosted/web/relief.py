"""Memory given back once a crowd of requests has gone.

Measured (BENCHMARKS.md, "camo on the AMD EPYC (session 21)"): 5,000 clients of one camo
image took its resident size from 63 MiB idle to ~700 MiB, and it stayed at ~150 MiB (2.4x
idle) for as long as the process was then left idle. None of it was live data: Python's
allocated blocks were back at their idle size. What held it:

- glibc's heap, ~20 MiB: freed chunks below live ones, kept until ``malloc_trim``
  (granian's jemalloc already returns its pages within seconds: ``web/allocator.py``);
- Python's free lists, which a full collection empties, and its object allocator's 1 MiB
  arenas, each kept while any block in it is live: 61 more than idle with ~0.4 MiB of live
  blocks between them. No call frees those; the allocator fills them first from then on.
  What keeps them live (``bench/camo_crowd_memory.py --trace``, which reads every arena): a
  few hundred blocks each of four bounded pools in C that a crowd refills with blocks from
  wherever its last requests freed them: asyncio's free list of future iterators (255),
  uvloop's of handles (250), granian's of awaitables (126 seen) and 472 strings held by C
  code the loop runs, the same number after one crowd or two. Neither a collection nor any
  other call from Python empties those pools; camo's own survivors are a few dozen blocks.

Nothing gives memory back by itself while a process is idle, and that is when an operator
looks. So after a crowd (requests in flight reached ``crowd``) whose requests have gone (at
most ``low`` in flight for ``settle`` seconds), :class:`Relief` runs a full collection and
``malloc_trim(0)`` once. Together they took that process from ~150 to ~120 MiB; the arenas
are the rest. The collection holds the loop once per crowd, for a time that grows with the
heap (camo's ~44,000 objects: ~25 ms of CPU at load 25; a disk cache index of 1,000,000
entries, ~0.3 s at load 24): at a moment when at most ``low`` requests are in flight to wait
for it. Per request it costs two calls and a comparison.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from pythonhosted.web.allocator import trim_heap

log = logging.getLogger(__name__)

#: requests in flight at once that make a crowd
CROWD = 1000
#: at most this many in flight counts as the crowd gone
LOW = 16
#: seconds the crowd must stay gone before memory is given back (a lull in a crowd is not it)
SETTLE = 2.0


class Relief(Collector):
    """Watches the requests in flight that the caller counts; gives memory back after a crowd.

    The caller calls :meth:`arrived` with the count after a request starts and :meth:`left`
    with it after one ends, on the serving loop. As a collector: ``{service}_memory_reliefs``,
    the times it did.
    """

    def __init__(
        self, service: str, crowd: int = CROWD, low: int = LOW, settle: float = SETTLE
    ) -> None:
        self.service = service
        self.crowd = crowd
        self.low = low
        self.settle = settle
        self.given = 0  # times memory was given back
        self._crowded = False
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            f"{self.service}_memory_reliefs",
            "Times memory was given back (full collection, malloc_trim) after a crowd of"
            " requests had gone.",
            value=self.given,
        )

    def arrived(self, in_flight: int) -> None:
        self._in_flight = in_flight
        if in_flight >= self.crowd:
            self._crowded = True

    def left(self, in_flight: int) -> None:
        self._in_flight = in_flight
        if self._crowded and in_flight <= self.low and self._timer is None:
            loop = asyncio.get_running_loop()  # once per crowd, not per request
            self._timer = loop.call_later(self.settle, self._give_back)

    def _give_back(self) -> None:
        self._timer = None
        if self._in_flight > self.low:
            return  # busy again: the next request to leave a lull arms the timer anew
        self._crowded = False
        collected = gc.collect()
        trim_heap()
        self.given += 1
        log.debug("memory given back after a crowd: %d objects collected", collected)
