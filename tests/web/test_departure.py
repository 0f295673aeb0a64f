"""``web.departure.Presence``: a request's own task stopped when its client leaves, unless
others still want its work; other cancellations (a shutdown) go on.

``receive`` here behaves as granian's: a future per message, the request's body first, then
one that resolves only when the client leaves (or a coroutine, as other servers give).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pythonhosted.web.departure import Departed, Presence
from pythonhosted.web.types import Message

BODY: Message = {"type": "http.request", "body": b"", "more_body": False}
GONE: Message = {"type": "http.disconnect"}


class Client:
    """A client's side of ``receive``: its body at once, then :meth:`leave` (heard by a
    ``receive`` waiting then, or by the next one, as granian keeps it)."""

    def __init__(self, body_messages: int = 1) -> None:
        self.body_messages = body_messages
        self.pending: list[asyncio.Future[Message]] = []
        self.left = False
        self.asked = 0  # receive calls

    def receive(self) -> asyncio.Future[Message]:
        self.asked += 1
        message: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        if self.body_messages:
            self.body_messages -= 1
            message.set_result(BODY)
        elif self.left:
            message.set_result(GONE)
        else:
            self.pending.append(message)
        return message

    def leave(self) -> None:
        self.left = True
        for message in self.pending:
            if not message.done():
                message.set_result(GONE)


async def answered(
    presence: Presence, work: Callable[[], Awaitable[str]], after: float = 0.0
) -> tuple[str, asyncio.Task[str]]:
    """What a request answers: its work's result, or "gone" if its client left first (the
    watch put off by ``after`` seconds)."""

    async def request() -> str:
        task = asyncio.current_task()
        assert task is not None
        presence.watch(task, after)
        try:
            return await work()
        except Departed:
            return "gone"
        except asyncio.CancelledError:
            if not presence.departed():
                raise
            return "gone"
        finally:
            presence.close()

    task = asyncio.ensure_future(request())
    await asyncio.sleep(0)
    return await task if task.done() else "", task


def test_a_client_that_leaves_stops_its_request_wherever_it_waits() -> None:
    async def scenario() -> list[str]:
        client = Client(body_messages=3)  # a body in pieces: not a departure
        presence = Presence(client.receive)
        stalled = asyncio.get_running_loop().create_future()  # an upstream that never answers
        _, task = await answered(presence, lambda: stalled)
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done()
        client.leave()
        return [await task, str(presence.gone), str(stalled.cancelled())]

    assert asyncio.run(scenario()) == ["gone", "True", "True"]


def test_work_others_want_goes_on_until_they_leave_too() -> None:
    async def scenario() -> list[str]:
        client = Client()
        presence = Presence(client.receive)
        others = [True]
        presence.keep = lambda: others[0]
        release = asyncio.get_running_loop().create_future()
        _, task = await answered(presence, lambda: release)
        client.leave()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        still = str(not task.done())
        others[0] = False
        presence.reconsider()  # as another task does when the last of the others leaves
        return [still, await task]

    assert asyncio.run(scenario()) == ["True", "gone"]


def test_inside_the_task_check_raises_departed_once_nobody_wants_the_work() -> None:
    async def scenario() -> str:
        client = Client()
        presence = Presence(client.receive)
        wanted = [True]
        presence.keep = lambda: wanted[0]

        async def work() -> str:
            client.leave()
            while not presence.gone:
                await asyncio.sleep(0)
            presence.check()  # kept: goes on
            wanted[0] = False
            presence.check()
            return "finished"

        _, task = await answered(presence, work)
        return await task

    assert asyncio.run(scenario()) == "gone"


def test_a_shutdown_that_cancels_the_request_too_is_not_taken_for_a_departure() -> None:
    async def scenario() -> tuple[bool, bool]:
        client = Client()
        presence = Presence(client.receive)
        _, task = await answered(presence, lambda: asyncio.get_running_loop().create_future())
        client.leave()
        while not presence.gone:
            await asyncio.sleep(0)
        unwound = task.done()
        task.cancel()  # the server stopping, before the request has unwound
        await asyncio.wait([task])
        return unwound, task.cancelled()

    assert asyncio.run(scenario()) == (False, True)


def test_after_close_a_departure_cancels_nothing() -> None:
    async def scenario() -> bool:
        client = Client()
        presence = Presence(client.receive)
        result, task = await answered(presence, lambda: asyncio.sleep(0, "done"))
        result = result or await task
        client.leave()
        await asyncio.sleep(0)
        presence.reconsider()
        return result == "done" and not presence.gone and not task.cancelled()

    assert asyncio.run(scenario())


def test_a_receive_that_is_a_coroutine_is_watched_too() -> None:
    async def scenario() -> str:
        left = asyncio.Event()
        sent_body = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return BODY
            await left.wait()
            return GONE

        presence = Presence(receive)
        _, task = await answered(presence, lambda: asyncio.get_running_loop().create_future())
        left.set()
        return await task

    assert asyncio.run(scenario()) == "gone"


def test_a_receive_that_fails_means_the_client_is_gone() -> None:
    async def scenario() -> str:
        def receive() -> asyncio.Future[Message]:
            raise RuntimeError("the connection is closed")

        presence = Presence(receive)
        _, task = await answered(presence, lambda: asyncio.get_running_loop().create_future())
        return await task

    assert asyncio.run(scenario()) == "gone"


def test_a_watch_put_off_asks_nothing_of_a_request_over_sooner() -> None:
    """Each of granian's ``receive`` calls is a task on its runtime handed back across threads
    (~50 µs of a proxied image's CPU): work done before the watch is due never makes one."""

    async def scenario() -> tuple[str, int]:
        client = Client()
        presence = Presence(client.receive)
        result, task = await answered(presence, lambda: asyncio.sleep(0, "done"), after=60)
        return result or await task, client.asked

    assert asyncio.run(scenario()) == ("done", 0)


def test_a_departure_before_a_put_off_watch_is_heard_once_it_starts() -> None:
    async def scenario() -> list[str]:
        client = Client()
        presence = Presence(client.receive)
        stalled = asyncio.get_running_loop().create_future()
        _, task = await answered(presence, lambda: stalled, after=0.01)
        client.leave()  # before the watch: nothing hears it yet
        return [str(presence.gone), await task, str(stalled.cancelled())]

    assert asyncio.run(scenario()) == ["False", "gone", "True"]


def test_hurry_starts_a_put_off_watch_at_once() -> None:
    """Others came to wait for the work: whether its client is there matters now."""

    async def scenario() -> list[str]:
        client = Client()
        presence = Presence(client.receive)
        stalled = asyncio.get_running_loop().create_future()
        _, task = await answered(presence, lambda: stalled, after=60)
        client.leave()
        asked = client.asked
        presence.hurry()
        return [str(asked), await task, str(client.asked)]

    assert asyncio.run(scenario()) == ["0", "gone", "2"]
