"""``pythonhosted camo serve`` under tracemalloc, for ``bench/camo_crowd_memory.py --trace``.

    python bench/camo_crowd_launcher.py SNAPSHOT FRAMES camo serve ...

SIGUSR1 starts tracing (FRAMES frames), so only what is allocated from then on is traced.
SIGUSR2 writes what is still alive of it, then stops tracing:

- ``SNAPSHOT``: tracemalloc's snapshot (sizes and tracebacks);
- ``SNAPSHOT.arenas``: each of Python's object-allocator arenas (1 MiB, freed only when all
  its blocks are), its live blocks, how many of them predate the tracing, and where the
  others were allocated, with a few of them read raw (type, refcount, a str's text); then,
  over the arenas that only blocks made since hold, what holds them. The arenas are read
  through ``libpython``'s symbol table (``nm``: a libpython with symbols, CPython 3.11's
  layout); bench only, it reads the allocator's private state;
- ``SNAPSHOT.objects``: the traced objects the collector can reach, by type and holder;
- ``SNAPSHOT.done`` when all is written. Python's allocator statistics go to stderr.
"""

from __future__ import annotations

import array
import collections
import ctypes
import gc
import signal
import struct
import subprocess
import sys
import tracemalloc
from typing import TextIO

POOL = 16384  # CPython 3.11's pool size on 64-bit, with its 48-byte header
POOL_HEADER = 48
ARENA_OBJECT = 48  # sizeof(struct arena_object)
SAMPLES = 12  # blocks read raw per group


def start(*_: object) -> None:
    tracemalloc.start(FRAMES)


def dump(*_: object) -> None:
    tracemalloc.take_snapshot().dump(PATH)
    with open(PATH + ".arenas", "w") as out:
        arenas(out)
    with open(PATH + ".objects", "w") as out:
        reachable(out)
    tracemalloc.stop()
    sys._debugmallocstats()
    sys.stderr.flush()
    open(PATH + ".done", "w").close()


def reachable(out: TextIO) -> None:
    """Traced objects that tracked objects hold, by (type, text, holder's type, where made)."""
    found: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
    seen = set()
    for holder in gc.get_objects():
        for held in [holder, *gc.get_referents(holder)]:
            if id(held) in seen:
                continue
            seen.add(id(held))
            traceback = tracemalloc.get_object_traceback(held)
            if traceback is None:
                continue
            where = f"{traceback[-1].filename.rsplit('/', 1)[-1]}:{traceback[-1].lineno}"
            shown = repr(held)[:50] if isinstance(held, str | bytes | int | float | tuple) else ""
            found[(type(held).__name__, shown, type(holder).__name__, where)] += 1
    for key, count in found.most_common(200):
        print(count, *key, sep=" | ", file=out)


def _symbols() -> tuple[int, int]:
    """Addresses of obmalloc's ``arenas`` and ``maxarenas`` in this process."""
    with open("/proc/self/maps") as maps:
        library = next(line.split()[-1] for line in maps if "libpython3" in line)
    wanted = {}
    listing = subprocess.run(["nm", library], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in ("arenas", "maxarenas", "PyObject_Malloc"):
            wanted[parts[2]] = int(parts[0], 16)
    malloc = ctypes.cast(ctypes.pythonapi.PyObject_Malloc, ctypes.c_void_p).value
    assert malloc is not None
    base = malloc - wanted["PyObject_Malloc"]
    return base + wanted["arenas"], base + wanted["maxarenas"]


def _live_blocks(address: int, carved: int, copy: bytes) -> tuple[array.array, array.array]:
    """The addresses and sizes of the allocated blocks in one arena, from a copy of it."""
    live, sizes = array.array("Q"), array.array("H")
    pool = (address + POOL - 1) & ~(POOL - 1)
    while pool < carved:
        used, free_block, _, _, _, size_index, next_offset, _ = struct.unpack_from(
            "QQQQIIII", copy, pool - address
        )
        if used & 0xFFFFFFFF:
            size = (size_index + 1) * 16
            free = set()
            while free_block and pool <= free_block < pool + POOL:
                free.add(free_block)
                free_block = struct.unpack_from("Q", copy, free_block - address)[0]
            for offset in range(POOL_HEADER, next_offset, size):
                if pool + offset not in free:
                    live.append(pool + offset)
                    sizes.append(size)
        pool += POOL
    return live, sizes


def arenas(out: TextIO) -> None:
    """Each arena's live blocks and where the traced ones were made (see the docstring)."""
    table_at, count_at = _symbols()
    table = ctypes.c_void_p.from_address(table_at).value or 0
    count = ctypes.c_uint.from_address(count_at).value
    traceback_of = ctypes.pythonapi._PyTraceMalloc_GetTraceback
    traceback_of.restype, traceback_of.argtypes = ctypes.py_object, [ctypes.c_uint, ctypes.c_size_t]
    raw = ctypes.string_at(table, ARENA_OBJECT * count)
    # Every arena copied before anything is worked out: the walk's own objects would land in
    # free pools and change what it reads. Copies over 512 bytes come from malloc, not arenas.
    copies = []
    for index in range(count):
        address, carved, free_pools, pools = struct.unpack_from("QQII", raw, ARENA_OBJECT * index)
        if address:
            copies.append(
                (
                    index,
                    free_pools,
                    pools,
                    address,
                    carved,
                    ctypes.string_at(address, carved - address),
                )
            )
    found = [
        (index, free_pools, pools, *_live_blocks(address, carved, copy))
        for index, free_pools, pools, address, carved, copy in copies
    ]
    del copies
    types = {id(kind): kind.__name__ for kind in (str, bytes, int, float, tuple, list, dict)}
    for thing in gc.get_objects():
        types[id(type(thing))] = type(thing).__name__
        if isinstance(thing, type):
            types[id(thing)] = thing.__name__
    pinned_by: collections.Counter[tuple[int, str]] = collections.Counter()
    arenas_of = collections.defaultdict(set)
    samples: collections.Counter[tuple[int, str]] = collections.Counter()
    for index, free_pools, pools, live, sizes in found:
        groups: collections.Counter[tuple[int, str]] = collections.Counter()
        untraced = 0
        for address, size in zip(live, sizes, strict=True):
            frames = traceback_of(0, address)
            if frames is None:
                untraced += 1
                continue
            where = " < ".join(f"{name.rsplit('/', 1)[-1]}:{line}" for name, line in frames[:4])
            groups[(size, where)] += 1
            if samples[(size, where)] < SAMPLES:
                samples[(size, where)] += 1
                print(f"  sample {size} B {where}: {_read(address, types)}", file=out)
        print(
            f"arena {index}: {pools - free_pools}/{pools} pools used, {len(live)} live blocks, "
            f"{untraced} made before the crowd",
            file=out,
        )
        if untraced == 0:
            for key, number in groups.items():
                pinned_by[key] += number
                arenas_of[key].add(index)
        for (size, where), number in groups.most_common(8):
            print(f"    {number} x {size} B: {where}", file=out)
    print("\nin arenas holding only blocks made during the crowd:", file=out)
    for key, number in sorted(pinned_by.items(), key=lambda item: -len(arenas_of[item[0]])):
        print(f"  {len(arenas_of[key])} arenas, {number} blocks of {key[0]} B: {key[1]}", file=out)


def _read(address: int, types: dict[int, str]) -> str:
    """What a block holds, read raw: type and refcount (a GC object's 16-byte header first),
    and a str's or bytes' first characters (CPython 3.11's layouts)."""
    for start in (address, address + 16):
        refs, kind = struct.unpack("qQ", ctypes.string_at(start, 16))
        if kind in types:
            name, shown = types[kind], ""
            if name in ("bytes", "str"):
                length = struct.unpack("q", ctypes.string_at(start + 16, 8))[0]
                text_at = start + (32 if name == "bytes" else 48)
                shown = repr(ctypes.string_at(text_at, min(length, 40)))
            return f"{name} refs={refs} {shown}"
    return "not an object: " + ctypes.string_at(address, 32).hex()


if __name__ == "__main__":
    PATH = sys.argv.pop(1)
    FRAMES = int(sys.argv.pop(1))
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump)
    sys.argv[0] = "pythonhosted"
    from pythonhosted.cli import run

    run()
