"""Work done for a client only while the client is there to take it.

granian does not cancel a request's coroutine when its client hangs up: it says so through
``receive`` (``http.disconnect``), and only to a coroutine that asks. A request that waits
for costly work (a stats page computed from the warehouse) would otherwise have that work
done for nobody: 1,000 clients that gave up after 5 s on cold pages left 986 computations
queued, and the next client waited 88 s behind them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from pythonhosted.web.types import Message, Receive

T = TypeVar("T")

#: nginx's "client closed request": what a request whose client left is counted as (sent to
#: nobody)
CLIENT_GONE = 499


class Departed(Exception):
    """The client hung up before the work was done; the work was cancelled."""


async def departure(receive: Receive) -> None:
    """Return once the client has hung up (a ``receive`` that fails means it has)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:
        return


async def while_present(receive: Receive, work: Awaitable[T]) -> T:
    """``work``'s result, or :class:`Departed` (``work`` cancelled) once the client hangs up
    first. ``work`` is cancelled too if the caller is."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(departure(receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()  # done a step later; nobody waits for it
    if not task.done():
        raise Departed
    return task.result()


class Presence:
    """Whether one request's client is still there; once it is not, the request's task is
    cancelled unless ``keep`` says others still want the task's work.

    For work that runs in the request's own task rather than beside it (camo relays an
    upstream body as it reads it: wrapping that in :func:`while_present` would cost a task
    per request, and could not keep the work going for others). Nothing is watched until
    :meth:`watch` (a request answered at once never pays for it); :meth:`close` ends the
    watch. After a ``CancelledError``, :meth:`departed` says whether it came from here.

    The watch is a callback on ``receive``'s next message, not a task: granian's ``receive``
    returns a future, and a task awaiting it (plus its cancellation at the end) cost a
    proxied image 6-10 µs of CPU. Another server's coroutine is wrapped in a task. Each of
    granian's ``receive`` calls still spawns a task on its own runtime that hands its result
    (or its cancellation) back across threads, which cost a proxied image ~50 µs of CPU
    through the server (a third of a miss); ``watch(task, after=...)`` starts the watch only
    once the work has taken that long, so work done sooner never pays it (granian keeps a
    departure that happened meanwhile for the first ``receive`` after it).

    Only the watch's callback and other tasks cancel the request's task, never the task
    itself: a task that cancels itself and then returns without another await ends
    cancelled. Inside the task, :meth:`check` raises :class:`Departed` instead.
    """

    __slots__ = (
        "_cancelling",
        "_receive",
        "_state",
        "_task",
        "_timer",
        "_watch",
        "gone",
        "keep",
    )

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._watch: asyncio.Future[Message] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._state = _WATCHING
        self.gone = False
        #: whether the work should go on although the client left (asked when it leaves and
        #: at each :meth:`reconsider` and :meth:`check`); None: stop at once
        self.keep: Callable[[], bool] | None = None

    def watch(self, task: asyncio.Task[object], after: float = 0.0) -> None:
        """Start watching for the client's departure (once; ``task`` is the request's), at
        once or ``after`` seconds from now if the request is not over by then."""
        if self._task is None:
            self._task = task
            self._cancelling = task.cancelling()
            if after > 0:
                self._timer = task.get_loop().call_later(after, self._listen)
            else:
                self._listen()
        elif after <= 0:
            self.hurry()  # asked again without the delay

    def hurry(self) -> None:
        """Watch from now on if :meth:`watch` put it off (others came to wait for this
        request's work, so whether its client is still there matters at once)."""
        if self._timer is not None:
            self._timer.cancel()
            self._listen()

    def _listen(self) -> None:
        """Wait for the client's next message. Messages of the request's body that are in
        already are passed over here; anything else is heard from the loop, never inside the
        request's task (see the class)."""
        self._timer = None
        while True:
            try:
                message = self._receive()
            except Exception:  # a receive that fails means the client is gone
                assert self._task is not None
                self._task.get_loop().call_soon(self._left)
                return
            self._watch = watch = _future_of(message)
            if not (watch.done() and _is_body(watch)):
                watch.add_done_callback(self._heard)
                return

    def _heard(self, watch: asyncio.Future[Message]) -> None:
        if watch.cancelled() or self._state is not _WATCHING:
            return
        if _is_body(watch):
            self._listen()  # more of the request's body, unread: not a departure
        else:
            self._left()  # a disconnect, or a receive that failed

    def _left(self) -> None:
        if self._state is _WATCHING:
            self.gone = True
            self.reconsider()

    def _abandoned(self) -> bool:
        return self.gone and (self.keep is None or not self.keep())

    def reconsider(self) -> None:
        """From another task: cancel the request's task if its client is gone and nobody
        else wants its work any more (call when what ``keep`` answers may have changed)."""
        if self._state is _WATCHING and self._abandoned():
            assert self._task is not None
            self._state = _CANCELLED
            self._task.cancel()

    def check(self) -> None:
        """From the request's task: :class:`Departed` if its client is gone and nobody else
        wants its work any more."""
        if self._abandoned():
            raise Departed

    def departed(self) -> bool:
        """Whether a ``CancelledError`` now unwinding the task came from the client's
        departure alone (it is then spent: the caller may go on and count it); False if
        something else cancelled the task too (a shutdown), whose cancellation must go on."""
        if self._state is not _CANCELLED:
            return False
        assert self._task is not None
        self._state = _SPENT
        return self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        """Stop watching: the request is over, and its task is not cancelled from here any
        more (a coalesced request may still ask)."""
        if self._state is _WATCHING:
            self._state = _SPENT
        if self._timer is not None:
            self._timer.cancel()  # over before the watch was due: granian was never asked
            self._timer = None
        watch = self._watch
        if watch is not None:
            watch.remove_done_callback(self._heard)  # then cancelling schedules nothing
            watch.cancel()


_WATCHING, _CANCELLED, _SPENT = "watching", "cancelled", "spent"


def _future_of(message: Awaitable[Message]) -> asyncio.Future[Message]:
    """A message to come as a future: granian's is one already (asyncio's ``ensure_future``
    would take three Python calls to say so), another server's coroutine runs in a task."""
    if hasattr(message, "add_done_callback"):
        return cast("asyncio.Future[Message]", message)
    return asyncio.ensure_future(message)


def _is_body(message: asyncio.Future[Message]) -> bool:
    """Whether a received message (done) is part of the request's body."""
    if message.cancelled() or message.exception() is not None:
        return False
    return bool(message.result()["type"] == "http.request")
