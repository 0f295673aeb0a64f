"""The edge's caches under a flood of unique keys: located objects, bodies, ranges.

A hashed path's object is cached once located (bounded in entries); bodies and repeated ranges
are cached in a byte budget that charges each entry its bookkeeping, so a client asking for
thousands of distinct tiny ranges, or for paths that do not exist, cannot grow the process.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import random
from pathlib import Path

import httpx

from pythonhosted.files.upload import upload
from pythonhosted.samples import build_wheel
from pythonhosted.storage import open_store
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


def test_a_burst_for_a_large_metadata_file_compresses_it_once_within_the_budget(
    edge: EdgeFactory, tmp_path: Path
) -> None:
    """200 requests (32 at a time) for a 400 KB ``.metadata`` with gzip share one compression,
    and the compressed copy is charged to the body cache's budget (it was compressed once per
    request, 500 at once: +340 MB, and kept beside each object outside any budget)."""
    primary = f"file://{tmp_path}/primary"
    description = base64.b64encode(random.Random(7).randbytes(300_000)).decode()
    filename, data = build_wheel("Big-Meta", "1.0", description=description)
    record = asyncio.run(upload(open_store(primary), filename, data))
    metadata = asyncio.run(open_store(primary).get_bytes(record.path[1:] + ".metadata"))
    compressed = gzip.compress(metadata, compresslevel=6, mtime=0)
    with edge(primary=primary) as url:
        burst = [(record.path + ".metadata", {"Accept-Encoding": "gzip"})] * 200
        assert asyncio.run(_get_all(url, burst)) == [200] * 200
        assert sample(url, "files_cache_bytes") == len(compressed) + ENTRY_BYTES
        again = httpx.get(url + record.path + ".metadata", headers={"Accept-Encoding": "gzip"})
        assert (again.headers["content-encoding"], again.content) == ("gzip", metadata)
        assert sample(url, "files_cache_bytes") == len(compressed) + ENTRY_BYTES


def test_a_metadata_file_the_cache_cannot_keep_goes_out_as_stored(
    edge: EdgeFactory, tmp_path: Path
) -> None:
    """A ``.metadata`` over ``cache_object_max_bytes`` is sent uncompressed: compressed, it
    was read whole and compressed again for every request (not kept: too large)."""
    primary = f"file://{tmp_path}/primary"
    description = base64.b64encode(random.Random(7).randbytes(300_000)).decode()
    filename, data = build_wheel("Big-Meta", "1.0", description=description)
    record = asyncio.run(upload(open_store(primary), filename, data))
    metadata = asyncio.run(open_store(primary).get_bytes(record.path[1:] + ".metadata"))
    with edge(primary=primary, cache_object_max_bytes=len(metadata) - 1) as url:
        for encoding in ("gzip", "br", "br, gzip"):
            answer = httpx.get(
                url + record.path + ".metadata", headers={"Accept-Encoding": encoding}
            )
            assert (answer.status_code, answer.content) == (200, metadata)
            assert "content-encoding" not in answer.headers
            assert (
                answer.headers["etag"]
                == httpx.head(url + record.path + ".metadata").headers["etag"]
            )
        assert sample(url, "files_cache_bytes") == 0
