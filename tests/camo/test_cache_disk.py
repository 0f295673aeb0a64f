"""The disk tier at production shape, through its Python API: its byte bound while many
bodies are written at once, the slots an earlier start left, the accounting after a restart,
serving while a large index is read."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from pythonhosted.camo.cache import layer
from pythonhosted.camo.cache.disk import BLOCK, DiskTier, DiskWriter, NoRoom
from pythonhosted.camo.cache.entry import Entry
from pythonhosted.camo.cache.layer import CachePolicy, ImageCache
from pythonhosted.camo.cache.store import CacheStore
from pythonhosted.camo.metrics import CamoMetrics


def _entry(key: str, writer: DiskWriter) -> Entry:
    url = f"http://images.test/{key}"
    headers = ((b"content-type", b"image/png"),)
    return Entry(url, url, headers, writer.length, writer.crc, time.time(), 60.0, 0.0, True)


def _on_disk(root: Path) -> int:
    """Bytes the files under ``root`` hold on disk (blocks allocated), temporary ones too."""
    return sum(
        os.stat(os.path.join(folder, name)).st_blocks * 512
        for folder, _, names in os.walk(root)
        for name in names
        if not name.endswith(".lock")
    )


def _store(tier: DiskTier, key: str, size: int) -> None:
    writer = tier.writer(key)
    writer.write(os.urandom(size))
    writer.commit(_entry(key, writer))


def test_the_bound_holds_while_many_bodies_are_written_at_once(tmp_path: Path) -> None:
    """40 bodies of 32 KB written at once into a 256 KB budget. The temporary files were not
    charged until renamed into place, so the disk held 1.3 MB at the peak, five times the
    bound, and a thousand images being stored at once could fill the disk. Now every chunk
    is charged before it is written (older entries evicted for it), a body that finds no
    room is given up, and the disk never holds more than the bound."""
    tier = DiskTier(tmp_path, max_bytes=256 * 1024)
    tier.open()
    for number in range(8):
        _store(tier, f"old{number:061x}", 20_000)
    writers = [tier.writer(f"{number:064x}") for number in range(40)]
    alive = list(writers)
    peak = 0
    for _ in range(4):  # 4 chunks of 8 KB each, every writer in turn
        for writer in list(alive):
            try:
                writer.write(b"\x89" * 8192)
            except NoRoom:
                writer.abort()
                alive.remove(writer)
            peak = max(peak, _on_disk(tmp_path))
            assert tier.bytes <= tier.max_bytes
    committed = 0
    for number, writer in enumerate(writers):
        if writer in alive:
            try:
                writer.commit(_entry(f"{number:064x}", writer))  # + its description's block
                committed += 1
            except NoRoom:
                writer.abort()
    assert peak <= 256 * 1024
    assert 0 < committed <= 7  # as many as the budget holds (9 blocks each), no more
    assert len(tier) == committed  # every old entry evicted for them
    assert tier.bytes == _on_disk(tmp_path) == committed * 9 * BLOCK
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_body_bigger_than_the_whole_budget_is_not_kept(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path, max_bytes=64 * 1024)
    tier.open()
    _store(tier, "a" * 64, 10_000)
    writer = tier.writer("b" * 64)
    with pytest.raises(NoRoom):
        writer.write(b"\0" * 70_000)
    writer.abort()
    assert (len(tier), tier.bytes) == (1, 3 * BLOCK)  # the entry it had is kept
    assert not list(tmp_path.rglob(".tmp-*"))


def test_slots_no_worker_claims_are_emptied_at_start(tmp_path: Path) -> None:
    """An earlier start with three workers left three slots; a start with one worker claimed
    slot 0 and left the other two on disk forever, outside every budget (two thirds of the
    bound again). Now the start empties the slots beyond its count that nobody holds."""
    earlier = [DiskTier(tmp_path, max_bytes=3_000_000, slots=3) for _ in range(3)]
    for number, tier in enumerate(earlier):
        tier.open()
        for item in range(5):
            _store(tier, f"{number}{item:063x}", 50_000)
    for tier in earlier[:2]:
        tier.close()
    # slot 2's process is still running (an old worker not yet stopped): left as it is
    tier = DiskTier(tmp_path, max_bytes=3_000_000, slots=1)
    tier.open()
    assert (len(tier), tier.bytes) == (5, 5 * 13 * BLOCK)
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == [
        "slot-0",
        "slot-2",
    ]
    assert len([path for path in (tmp_path / "slot-2").rglob("*") if path.is_file()]) == 5
    earlier[2].close()
    tier.close()
    again = DiskTier(tmp_path, max_bytes=3_000_000, slots=1)
    again.open()
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == ["slot-0"]
    assert again.bytes == _on_disk(tmp_path) == 5 * 13 * BLOCK
    again.close()


def test_a_restart_charges_what_the_disk_holds(tmp_path: Path) -> None:
    """Entries are charged in whole blocks, as the disk holds them (a 5,000-byte image was
    charged 5,000-odd bytes, held 8 KB): after a restart the bytes counted are the bytes held,
    and a crash's temporary files are gone."""
    tier = DiskTier(tmp_path, max_bytes=10_000_000)
    tier.open()
    for number in range(50):
        _store(tier, f"{number:064x}", 5_000 + number * 100)
    crashed = tier.writer("c" * 64)
    crashed.write(b"\0" * 30_000)  # the process dies here: never committed nor aborted
    counted = tier.bytes
    tier.close()
    again = DiskTier(tmp_path, max_bytes=10_000_000)
    again.open()
    assert not list(tmp_path.rglob(".tmp-*"))
    assert again.bytes == _on_disk(tmp_path) == counted - 8 * BLOCK
    assert len(again) == 50


class _GatedDisk(DiskTier):
    """A disk tier whose index takes as long as the test says (a million entries' worth)."""

    def __init__(self, root: Path, gate: threading.Event) -> None:
        super().__init__(root, max_bytes=1_000_000)
        self._gate = gate

    def open(self) -> None:
        self._gate.wait(20)
        super().open()


def test_requests_are_served_uncached_while_a_large_index_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start indexed the whole disk tier before serving, and every request waited for it:
    a million entries kept camo from answering anything for 10-30 s. Now a start waits for
    the index up to INDEX_WAIT, then requests are served uncached until it is read."""
    monkeypatch.setattr(layer, "INDEX_WAIT", 0.2)
    gate = threading.Event()
    policy = CachePolicy(default_ttl=60, max_ttl=600, stale_if_error=60, object_max_bytes=10**6)
    cache = ImageCache(CacheStore(_GatedDisk(tmp_path, gate), 10**6, 10**5), policy, CamoMetrics())

    async def scenario() -> list[bool]:
        try:
            async with asyncio.timeout(10):
                seen = [await cache.available(), await cache.available()]
                gate.set()
                await cache.indexed()
                return [*seen, await cache.available()]
        finally:
            gate.set()

    assert asyncio.run(scenario()) == [False, False, True]
