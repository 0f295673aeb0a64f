"""A flood of refusals cannot flood the log: a few lines per reason, then one summary line.

Before, each of 2,000 hostile requests wrote its own INFO line (~200 bytes of JSON each), so
anyone could fill an operator's disk at the rate camo refuses; and each response cut off
mid-body (an upstream that breaks off, trickles past the deadline) was an ERROR with a
traceback (~1.5 KB): 2,600 of them from one flood against a trickling upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from pythonhosted.camo import refusals
from pythonhosted.camo.errors import Refused
from pythonhosted.camo.refusals import BURST, RefusalLog
from support.flood import fetch_all

if TYPE_CHECKING:
    from conftest import CamoFactory, RawUpstream

FLOOD = 2000


def test_a_flood_of_refusals_logs_a_few_lines_and_counts_them_all(
    make_camo: CamoFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with make_camo() as camo, caplog.at_level(logging.INFO, logger="pythonhosted.camo"):
        answers = asyncio.run(fetch_all(camo.base, [f"/{n:040x}/{n:x}" for n in range(FLOOD)]))
        metrics = camo.client.get("/metrics").text
    assert [answer.status for answer in answers] == [404] * FLOOD
    assert f'camo_responses_failed_total{{reason="signature"}} {FLOOD}.0' in metrics
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("pythonhosted.camo")]
    assert lines == ["camo refused: bad signature or encoding"] * BURST


def test_responses_cut_off_mid_body_are_logged_within_the_bound_without_tracebacks(
    make_camo: CamoFactory, raw_upstream: RawUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream that declares 1,000 bytes, sends 500 and hangs up: each client gets the
    status, then a dropped connection (never a clean 200 of half an image)."""
    raw_upstream.replies["/half"] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n" + bytes(500)
    )
    cut = 3 * BURST
    with make_camo() as camo, caplog.at_level(logging.INFO, logger="pythonhosted"):
        for _ in range(cut):
            with pytest.raises(httpx.RemoteProtocolError):
                camo.get(raw_upstream.base + "/half")
        metrics = camo.client.get("/metrics").text
    assert f'camo_responses_failed_total{{reason="upstream_body"}} {cut}.0' in metrics
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name != "httpx"]
    assert lines == [("INFO", "camo cut off: upstream body broke off")] * BURST


def test_the_window_ends_with_one_line_for_what_was_not_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(refusals, "WINDOW", 0.05)

    async def flood() -> None:
        log = RefusalLog()
        for _ in range(BURST + 7):
            log.refused(Refused(404, "signature", "bad signature or encoding"))
        for _ in range(3):
            log.refused(Refused(403, "content_type", "content type text/html not allowed"))
        deadline = time.monotonic() + 10
        while len(caplog.records) < BURST + 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        log.refused(Refused(404, "signature", "bad signature or encoding"))  # a new window

    with caplog.at_level(logging.INFO, logger="pythonhosted.camo"):
        asyncio.run(flood())
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        *["camo refused: bad signature or encoding"] * BURST,
        *["camo refused: content type text/html not allowed"] * 3,
        "camo refused or cut off 7 more in 0.05 s (not logged one by one): signature=7",
        "camo refused: bad signature or encoding",
    ]
    assert caplog.records[-2].refused == {"signature": 7}  # type: ignore[attr-defined]
