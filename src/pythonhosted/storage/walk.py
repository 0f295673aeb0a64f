"""The names one level below a local directory, walked as :class:`DirectoryStore` lists them.

Runs in a thread of the caller (``names_below``), or as a script in a process of its own
(``python -I walk.py DIRECTORY``: the names, sorted, each ended by a NUL byte, on stdout) for a
listing of a whole catalog: a million project directories took 10-14 s of CPU in Python, and
in a thread of the server every other request waited for the GIL that whole time (``/_health``
up to ~3 s, BENCHMARKS.md "index root"). A process of its own shares no GIL, and is killed
when the listing is abandoned (a stop of the server), where a thread ran on to its end.

Only the standard library is imported: the script starts in ~20 ms, with none of the
package's imports.
"""

from __future__ import annotations

import heapq
import os
import sys

# Names sorted at once by one call to ``sorted``: about 1 ms of CPU on a loaded machine, well
# under the interpreter's switch interval (5 ms).
SORT_BATCH = 4096


def names_below(directory: str) -> list[str]:
    """Files and non-empty directories right below ``directory``, sorted; [] when it is not
    there. It walks the directory as it reads it (no list of a million entries first) and
    sorts in batches, so in a thread it never holds the GIL for longer than a batch."""
    return sorted_in_batches(_walk(directory))


def _walk(directory: str) -> list[str]:
    names = []
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if _holds_a_file(entry.path):
                    names.append(entry.name)
            elif entry.is_file(follow_symlinks=False) and "#" not in entry.name:
                names.append(entry.name)  # ("#": obstore's staging files of puts under way)
    return names


def sorted_in_batches(names: list[str]) -> list[str]:
    """``sorted(names)``, made of sorts of :data:`SORT_BATCH` names merged by ``heapq.merge``
    (Python code: the GIL changes hands between its steps).

    Hand-written for a measured stall: one ``sorted`` of a million project names (the catalog's
    root listing) held the GIL for 0.45-0.5 s at load 8-10, and every request of the server
    waited that long (``/_health`` up to ~3 s with the rest of the root page's work). Sorting
    this way costs ~0.6 s more CPU a million names (1.05 s, not 0.44 s, at load 8).
    """
    if len(names) <= SORT_BATCH:
        return sorted(names)
    runs = [sorted(names[at : at + SORT_BATCH]) for at in range(0, len(names), SORT_BATCH)]
    return list(heapq.merge(*runs))


def _holds_a_file(directory: str) -> bool:
    """Whether any file lies below ``directory``: the first one found ends the search (a
    project's directory holds files directly, so this is one small read of it). A directory
    gone meanwhile holds none."""
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return False
    with entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                return True
            if entry.is_dir(follow_symlinks=False) and _holds_a_file(entry.path):
                return True
    return False


def main(arguments: list[str]) -> int:
    """Write the names below ``arguments[0]`` to stdout; an unreadable directory: one line on
    stderr, exit status 1."""
    try:
        names = sorted(_walk(arguments[0]))  # (no GIL to share here: one sort)
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    try:
        for at in range(0, len(names), SORT_BATCH):
            out.write(b"".join(os.fsencode(name) + b"\0" for name in names[at : at + SORT_BATCH]))
        out.flush()
    except BrokenPipeError:  # the listing was abandoned
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
