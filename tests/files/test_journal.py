"""The purge journal the workers of one `files serve` share (one purge, every cache)."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

from pythonhosted.files.journal import EVERYTHING, PurgeJournal
from support.processes import started

PUBLISH = """
import sys
from pathlib import Path
from pythonhosted.files.journal import EVERYTHING, PurgeJournal
journal = PurgeJournal(Path(sys.argv[1]))
for n in range(2000):
    journal.publish(f"packages/{sys.argv[2]}/{n}/name\\nwith|odd chars é")
"""


def test_every_worker_reads_every_purge_once(tmp_path: Path) -> None:
    path = PurgeJournal.create(tmp_path / "journal")
    reader = PurgeJournal(path)
    assert reader.news() == []
    seen: list[str] = []
    with ExitStack() as stack:
        writers = [
            stack.enter_context(started([sys.executable, "-c", PUBLISH, str(path), str(w)]))
            for w in range(4)
        ]
        while any(writer.poll() is None for writer in writers):
            seen += reader.news()  # reading while they write: never half an entry
        assert [writer.returncode for writer in writers] == [0] * 4
    seen += reader.news()
    expected = {f"packages/{w}/{n}/name\nwith|odd chars é" for w in range(4) for n in range(2000)}
    assert len(seen) == len(expected) and set(seen) == expected
    assert reader.news() == []
    late = PurgeJournal(path)  # a worker started later has nothing cached from before
    assert late.news() == []
    late.publish("packages/one/more")
    assert reader.news() == ["packages/one/more"]
    assert late.news() == ["packages/one/more"]  # its own purge comes back: harmless


def test_the_journal_stays_bounded_and_a_reader_left_behind_forgets_everything(
    tmp_path: Path,
) -> None:
    """10,000 purges through a journal of at most 1,000 bytes: it starts afresh each time it
    would pass that, a reader that keeps up still gets every key, and one that fell behind a
    fresh start is told to forget everything (it cannot know what it missed). The journal
    grew by every purge for the life of the instance."""
    path = PurgeJournal.create(tmp_path / "journal")
    writer, current, behind = (PurgeJournal(path, max_bytes=1000) for _ in range(3))
    for n in range(10_000):
        writer.publish(f"packages/{n:05d}/name")
        assert current.news() == [f"packages/{n:05d}/name"]
        assert path.stat().st_size <= 16 + 1000
    assert behind.news() is EVERYTHING
    assert behind.news() == []
    writer.publish("packages/last")
    assert (behind.news(), current.news()) == (["packages/last"], ["packages/last"])
