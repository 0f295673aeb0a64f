"""camo gives memory back once a crowd of requests has gone (``web/relief.py``).

The crowd here is small (the threshold lowered through the app's ``relief``); what is
checked is that it happens once per crowd and not for requests below the threshold, as the
metrics say. What it gives back is measured in BENCHMARKS.md (session 21).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from pythonhosted.camo import create_app, sign_url
from pythonhosted.config import CamoSettings
from pythonhosted.web.server import running
from support.processes import wait_until

if TYPE_CHECKING:
    from conftest import Upstream

KEY = "relief-key"
CROWD = 40


def _reliefs(base: str) -> float:
    lines = httpx.get(base + "/metrics").text.splitlines()
    return next(float(line.split()[1]) for line in lines if line.startswith("camo_memory_reliefs"))


async def _at_once(urls: list[str]) -> list[int]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as client:
        answers = await asyncio.gather(*(client.get(url) for url in urls))
    return [answer.status_code for answer in answers]


def test_memory_is_given_back_once_after_a_crowd_and_not_after_a_few(
    upstream: Upstream, lookup: Callable[[str, int], Any]
) -> None:
    settings = CamoSettings(key=KEY, allow_networks=["127.0.0.2/32"], timeout=3.0)
    app = create_app(settings, lookup=lookup)
    assert app.relief is not None
    app.relief.crowd = CROWD
    app.relief.settle = 0.2
    slow = sign_url(f"{upstream.base}/slow", KEY.encode())  # held until camo's deadline
    with running(app) as base:
        assert _reliefs(base) == 0
        # a few at once: no crowd, nothing given back (a crowd would have been by now)
        assert asyncio.run(_at_once([base + slow] * (CROWD // 4))) == [504] * (CROWD // 4)
        assert _reliefs(base) == 0
        # a crowd, all in flight together until the deadline: given back once they have gone
        assert asyncio.run(_at_once([base + slow] * (CROWD + 10))) == [504] * (CROWD + 10)
        wait_until(lambda: _reliefs(base) == 1)
        # the next requests, below the threshold, are no crowd of their own
        png = sign_url(f"{upstream.base}/png", KEY.encode())
        assert asyncio.run(_at_once([base + png] * 5)) == [200] * 5
        assert _reliefs(base) == 1
