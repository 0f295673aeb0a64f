"""The edge's caches under a flood of unique keys: located objects, bodies, ranges.

A hashed path's object is cached once located (bounded in entries); bodies and repeated ranges
are cached in a byte budget that charges each entry its bookkeeping, so a client asking for
thousands of distinct tiny ranges, or for paths that do not exist, cannot grow the process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pythonhosted.web.bodycache import ENTRY_BYTES
from support.edge import SAMPLES, EdgeFactory, seed
from support.flood import fetch_all
from support.metrics import sample

WHEEL = SAMPLES["wheel"]


async def _get_all(base_url: str, requests: list[tuple[str, dict[str, str]]]) -> list[int]:
    return [answer.status for answer in await fetch_all(base_url, requests)]


def test_thousands_of_distinct_ranges_fill_the_budget_not_memory(
    edge: EdgeFactory, tmp_path: Path
) -> None:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    budget = 100 * (ENTRY_BYTES + 1)
    # Objects over 1 KB are not cached whole, so small ranges of the local file go by pread
    # and are cached one by one.
    with edge(primary=primary, cache_max_bytes=budget, cache_object_max_bytes=1024) as url:
        ranges = [(WHEEL.path, {"Range": f"bytes={n}-{n}"}) for n in range(2_000)]
        assert asyncio.run(_get_all(url, ranges)) == [206] * 2_000
        assert sample(url, "files_cache_entries", cache="bodies") == 100
        assert sample(url, "files_cache_bytes") == budget


def test_paths_that_do_not_exist_are_not_cached(edge: EdgeFactory, tmp_path: Path) -> None:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    with edge(primary=primary) as url:
        missing = [(f"/packages/00/00/{n:060x}/nothing-{n}.tar.gz", {}) for n in range(1_000)]
        assert asyncio.run(_get_all(url, missing)) == [404] * 1_000
        assert sample(url, "files_cache_entries", cache="objects") == 0


def test_located_objects_are_bounded_in_entries(edge: EdgeFactory, tmp_path: Path) -> None:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    with edge(primary=primary, cache_entries=1) as url:
        paths = [(sample_.path, {}) for sample_ in SAMPLES.values()] * 50
        assert asyncio.run(_get_all(url, paths)) == [200] * 100
        assert sample(url, "files_cache_entries", cache="objects") == 1
