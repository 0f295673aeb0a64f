"""What a cold request gets when ``stats_web.max_pending`` answers are already being
computed: 503 at once, with ``Retry-After``, in the kind its route answers in.

Without a bound, every distinct cold question waited its turn for a worker thread: a crawler
walking every project, a badge embedded for many projects on a popular page, or a flood
queued behind each other, every answer got slower with the queue, and memory grew with it.
Shedding keeps the answers that are admitted as fast as the cores allow and tells the rest
to come back, as nginx's ``limit_conn`` and Warehouse's 503s do.

The answer is never cached anywhere (``Cache-Control: no-store``): it says nothing about
the data. For an SVG badge it is a badge that says "busy" rather than an error text: a
browser draws the image a 503 carries, so a page that embeds the badge shows a grey badge
instead of a broken image (image proxies such as camo turn any 5xx into an error of their
own, so through them it is broken either way, until the next view). shields.io's endpoint
badge reads only the status of a non-200 answer (it draws "invalid"), so the shields route
answers as the other API routes do, in JSON.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from pythonhosted.stats_web import api, badges, pages
from pythonhosted.stats_web.params import Params
from pythonhosted.web.types import Headers

RETRY_AFTER = 2  # seconds: a computation takes milliseconds, a person reloading waits longer
REASON = f"busy: too many answers are being computed; retry in {RETRY_AFTER} s"
HEADERS: Headers = [
    (b"retry-after", str(RETRY_AFTER).encode()),
    (b"cache-control", b"no-store"),
]
BUSY_COLOR = badges.COLORS["lightgrey"]


class Busy(Exception):
    """``max_pending`` answers are being computed; this one was not started."""


class Admission:
    """The questions being answered and how many requests wait on each: a new question
    past ``limit`` of them in its lane (:mod:`.lanes`: long or quick) is refused
    (:class:`Busy`); joining one in flight always goes ahead, since it adds no work.

    A lane each, so that long answers filling their ``limit`` never shed a quick one: with
    one count for both, 16 cold pages under way right after a publish turned every badge
    and revalidation away.

    Counted here, at the moment of each request's check, rather than read from the
    coalescer's table of computations: a computation enters that table when its task
    first runs, one turn of the event loop later, so a crowd arriving within one turn
    passed its checks against a table that had not grown (a bound of 4 let 18 through).
    A question leaves when its last request does (answered, or the client gone; the
    coalescer then cancels the computation, or lets a worker thread finish it: the
    threads are few).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # per lane (long?): each question's waiting requests
        self._waiting: dict[bool, dict[Hashable, int]] = {False: {}, True: {}}
        self.idle = asyncio.Event()  # set while no question is being answered
        self.idle.set()

    def __len__(self) -> int:
        return len(self._waiting[False]) + len(self._waiting[True])

    @contextmanager
    def admitted(self, key: Hashable, *, long: bool) -> Iterator[None]:
        """The request waits for ``key``'s answer (in the ``long`` lane or the quick one)
        inside the block (Busy: not admitted)."""
        lane = self._waiting[long]
        waiting = lane.get(key, 0)
        if not waiting and len(lane) >= self.limit:
            raise Busy
        lane[key] = waiting + 1
        self.idle.clear()
        try:
            yield
        finally:
            left = lane[key] - 1
            if left:
                lane[key] = left
            else:
                del lane[key]
                if not len(self):
                    self.idle.set()


def answer(path: str, params: Params) -> tuple[bytes, bytes]:
    """The body and content type of a shed request for ``path``: cheap, and made once per
    kind (a badge's once per label and style: the client chooses those)."""
    if path.startswith("/badge/"):
        _, label, _, style = badges.options(params)
        return _badge(label, style), badges.SVG
    if path.startswith("/api/"):
        return _json(), api.JSON
    return _page(), pages.HTML


@functools.cache
def _json() -> bytes:
    return api.dumps({"error": REASON})


@functools.cache
def _page() -> bytes:
    message = f"Too many answers are being computed right now; retry in {RETRY_AFTER} s."
    return pages.error("Busy", message)


@functools.lru_cache(maxsize=256)
def _badge(label: str, style: str) -> bytes:
    return badges.svg(label, "busy", BUSY_COLOR, style)
