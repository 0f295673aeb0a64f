"""Every parser cache is bounded in entries and bytes: a hostile log of 100,000 distinct
user agents (12 times the memos' 8,192 entries; the last 10,000 of them ~8 kB each, 80 MB
against their 16-64 MB byte bounds), each download with a served line of facts
no other has, goes through ingest, and each memo stays within its bounds while the rows stay
right. The C converter's own tables in front of the memos are checked the same way."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from isal import isal_zlib

from pythonhosted.linehaul import columns, events, useragents
from pythonhosted.linehaul.ingest import ingest_once
from pythonhosted.linehaul.memo import Memo, shallow_size
from pythonhosted.storage import open_store
from support.linehaul_data import download_line, log_key

AGENTS = 100_000
LONG = 10_000  # the last ones, with an 8 kB field
MEMOS: list[Memo[Any, Any]] = [useragents.KNOWN, events.TIMESTAMPS, *columns.MEMOS]


@pytest.fixture(params=["native", "python"])
def converter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(columns, "_columns", None)
    for memo in MEMOS:
        memo.clear()
    return str(request.param)


def _agent(number: int) -> str:
    """A pip agent no other line has; the long ones carry 8 kB in the distro's name."""
    distro = f"distro-{number}" + ("x" * 8000 if number >= AGENTS - LONG else "")
    data = {"installer": {"name": "pip", "version": "24.0"}, "distro": {"name": distro}}
    return f"pip/24.0 {json.dumps(data)}"


def _lines() -> Iterator[bytes]:
    """Each download line after a served line of its own facts (bytes sent: its number)."""
    for number in range(AGENTS):
        served = f"served|206|{number}|1|{number}|||||\n"
        yield (served + download_line(number, agent=_agent(number)) + "\n").encode()


def _object() -> bytes:
    compress = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    return b"".join([*map(compress.compress, _lines()), compress.flush()])


@pytest.mark.long
def test_a_flood_of_distinct_agents_stays_within_every_memo(tmp_path: Path, converter: str) -> None:
    logs = open_store(f"file://{tmp_path}/logs")
    results = open_store(f"file://{tmp_path}/results")

    async def run() -> list[Any]:
        await logs.put(log_key(0), _object())
        summary = await ingest_once(logs, results, lease_timeout=60.0)
        assert (summary.objects, summary.counts.rows) == (1, AGENTS)
        files = [await results.get_bytes(item.key) for item in await results.list()]
        assert len(files) > 1  # in parts
        return [orjson.loads(row) for data in files for row in data.splitlines()]

    parsed = sorted(asyncio.run(run()), key=lambda row: str(row["url"]))
    for memo in MEMOS:
        assert len(memo) <= memo.size and memo.bytes <= memo.max_bytes
    agents = columns.AGENT_DETAILS if converter == "native" else columns.DETAILS
    # the long agents filled the agent memos by bytes, the short ones by entries before
    assert useragents.KNOWN.bytes > useragents.KNOWN.max_bytes * 0.9 > 0
    assert agents.bytes > agents.max_bytes * 0.9
    assert len(useragents.KNOWN) < useragents.KNOWN.size
    assert [row["url"] for row in parsed] == [
        f"/packages/{number:08d}/demo-1.0-py3-none-any.whl" for number in range(AGENTS)
    ]
    for number in (0, AGENTS // 2, AGENTS - LONG, AGENTS - 1):
        distro = parsed[number]["details"]["distro"]["name"]
        assert distro == json.loads(_agent(number).split(" ", 1)[1])["distro"]["name"]
    assert [row["response"]["bytes_sent"] for row in parsed] == list(range(AGENTS))
    assert len(columns.RESPONSE) == columns.RESPONSE.size  # refilled, not grown


@pytest.mark.long
def test_the_c_tables_stay_within_their_bounds(converter: str) -> None:
    if converter == "python":
        pytest.skip("the C converter's tables")
    assert columns._columns is not None
    tables = columns.object_tables()
    assert isinstance(tables, columns._NativeTables)
    block: list[bytes] = []
    most = [0] * len(columns._FIELD_MEMOS)
    for line in _lines():
        block.append(line)
        if len(block) == 2000:
            text = b"".join(block)
            counted = tables.convert(text, pytest.fail, True)
            assert (counted[0], counted[4]) == (2000, 2000)  # rows, served lines
            tables.finish()
            for field, (entries, held) in enumerate(tables.cache_sizes()):
                assert entries <= columns._columns.CACHE_ENTRIES
                assert held <= columns._columns.CACHE_BYTES
                most[field] = max(most[field], held)
            block = []
    details = columns._FIELD_MEMOS.index(columns.AGENT_DETAILS)
    assert most[details] > columns._columns.CACHE_BYTES * 0.9
    response = columns._FIELD_MEMOS.index(columns.RESPONSE)
    assert most[response] > 0


def test_a_memo_shared_by_converting_threads_keeps_its_bounds_and_books() -> None:
    """Several log objects convert at once, each in a thread, sharing the memos. Two threads
    missing one key both queued it for eviction; evicting it the second time raised KeyError
    in the middle of a conversion (a clean CI run caught it)."""

    def compute(key: int) -> str:
        time.sleep(0)  # let another thread in between computing and storing, as real work does
        return str(key)

    memo: Memo[int, str] = Memo(compute, size=64, max_bytes=1 << 20)
    failures: list[BaseException] = []

    def hammer(seed: int) -> None:
        keys = random.Random(seed)
        try:
            for _ in range(20_000):
                key = keys.randrange(200)
                assert memo[key] == str(key)
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(memo) <= 64
    assert memo.bytes == sum(shallow_size(key, value) for key, value in memo.items())
