"""The edge's memory cache: byte bound, LRU order, and purges that take every range along."""

from __future__ import annotations

from pythonhosted.web.bodycache import ENTRY_BYTES, BodyCache, Pieces


def test_bounded_by_bytes_least_recently_used_out() -> None:
    cache = BodyCache(max_bytes=10, max_object_bytes=6, entry_bytes=0)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # now "b" is the least recently used
    cache.put("c", b"cccc")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"aaaa", None, b"cccc")
    assert cache.size == 8
    cache.put("big", b"x" * 7)  # larger than one object may be: not kept
    assert cache.get("big") is None


def test_ranges_are_separate_entries_and_go_with_their_object() -> None:
    cache = BodyCache(max_bytes=100, max_object_bytes=50, entry_bytes=0)
    cache.put("wheel", b"tail", 96, 100)
    cache.put("wheel", b"head", 0, 4)
    cache.put("other", b"whole")
    assert cache.get("wheel") is None  # the whole object was never cached
    assert cache.get("wheel", 96, 100) == b"tail"
    cache.discard("wheel")
    assert (cache.get("wheel", 96, 100), cache.get("wheel", 0, 4)) == (None, None)
    assert cache.get("other") == b"whole"
    assert cache.size == 5


def test_each_entry_is_charged_its_bookkeeping() -> None:
    """A million distinct one-byte ranges would otherwise fit a budget of a few megabytes."""
    cache = BodyCache(max_bytes=100 * ENTRY_BYTES, max_object_bytes=2**20)
    for start in range(100_000):
        cache.put("wheel", b"x", start, start + 1)
    assert cache.entries == 99  # 99 * (1 + ENTRY_BYTES) fits, 100 do not
    assert cache.size == 99 * (1 + ENTRY_BYTES)
    assert cache.get("wheel", 99_999, 100_000) == b"x"
    assert cache.get("wheel", 0, 1) is None


def test_large_bodies_are_kept_in_pieces_and_sliced_exactly() -> None:
    data = bytes(range(256)) * 4 + b"tail"  # 1,028 bytes: four whole pieces of 256 and a bit
    body = Pieces(data, 256)
    assert [len(part) for part in body.parts] == [256, 256, 256, 256, 4]
    assert b"".join(body.parts) == data
    spans = [(0, 1), (0, 256), (255, 257), (256, 512), (3, 1025), (1020, 1028), (1027, 1028)]
    assert [body.slice(start, end) for start, end in spans] == [data[a:b] for a, b in spans]
    cache = BodyCache(max_bytes=2000, max_object_bytes=2000, entry_bytes=0)
    cache.put("wheel", body)
    assert cache.get("wheel") is body
    assert cache.size == len(data)  # charged for its bytes, not its number of pieces


def test_the_head_of_a_large_body_is_also_kept_in_small_pieces_and_charged() -> None:
    """What goes to a client before it has shown it reads fast: stored parts, not slices cut
    per response, counted in the cache's bytes."""
    data = bytes(range(256)) * 4 + b"tail"
    body = Pieces(data, 256, head_piece=100, head_bytes=250)
    assert [len(part) for part in body.head] == [100, 100, 50]
    assert body.slice(0, 100) is body.head[0]
    assert body.slice(100, 200) is body.head[1]
    assert body.slice(200, 250) is body.head[2]
    assert body.slice(0, 256) is body.parts[0]
    spans = [(0, 99), (50, 150), (200, 251), (240, 260), (300, 400), (0, 1028)]
    assert [body.slice(start, end) for start, end in spans] == [data[a:b] for a, b in spans]
    cache = BodyCache(max_bytes=2000, max_object_bytes=2000, entry_bytes=0)
    cache.put("wheel", body)
    assert cache.size == len(data) + 250
    cache.discard("wheel")
    assert cache.size == 0
