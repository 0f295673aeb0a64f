"""The purge journal the workers of one service share (one purge, every cache); through the
files edge in tests/files/test_purges.py, through camo in tests/camo/test_cache.py."""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from pythonhosted.web.purges import EVERYTHING, PurgeJournal
from support.processes import started

PUBLISH = """
import sys
from pathlib import Path
from pythonhosted.web.purges import EVERYTHING, PurgeJournal
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


# Publishes under a file-size limit until the journal refuses one; says how many it took.
PUBLISH_LIMITED = """
import resource, signal, sys
from pathlib import Path
from pythonhosted.web.purges import PurgeJournal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit: EFBIG, as ENOSPC on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
journal = PurgeJournal(Path(sys.argv[1]))
taken = 0
try:
    while True:
        journal.publish(f"packages/{taken:04d}/a-file-name.whl")
        taken += 1
except OSError:
    print(taken)
"""

# Publishes until the journal starts afresh and is killed right after it emptied the file.
KILLED_STARTING_AFRESH = """
import os, signal, sys
from pathlib import Path
from pythonhosted.web.purges import PurgeJournal
truncate = os.ftruncate

def truncate_then_die(fd, length):
    truncate(fd, length)
    os.kill(os.getpid(), signal.SIGKILL)

os.ftruncate = truncate_then_die
journal = PurgeJournal(Path(sys.argv[1]), max_bytes=1000)
for n in range(100):
    journal.publish(f"packages/{n:04d}/a-file-name.whl")
"""


def test_a_full_disk_refuses_a_purge_and_never_tears_the_journal(tmp_path: Path) -> None:
    """A write that the disk takes only part of (the journal's tmpfs full; here a file-size
    limit 1,000 bytes in, mid-entry) was counted whole: every worker then failed to read
    the journal at every request. Now the purge is refused and the others read every one
    it took; a writer with room goes on from there."""
    path = PurgeJournal.create(tmp_path / "journal")
    reader = PurgeJournal(path)
    child = [sys.executable, "-c", PUBLISH_LIMITED, str(path), "1000"]
    with started(child, stdout=subprocess.PIPE) as writer:
        said, _ = writer.communicate(timeout=120)
    taken = int(said)
    assert taken == (1000 - 16) // 32  # whole entries of 32 bytes after the 16-byte header
    assert reader.news() == [f"packages/{n:04d}/a-file-name.whl" for n in range(taken)]
    PurgeJournal(path).publish("packages/after")
    assert reader.news() == ["packages/after"]


def test_a_writer_killed_starting_afresh_makes_readers_forget_everything(tmp_path: Path) -> None:
    """SIGKILL between emptying the journal for a fresh start and saying so in its header: a
    reader behind read the emptied file as the entries it had not read (none) and never
    forgot the purges it missed. Now the header says so first, and such a reader forgets
    everything."""
    path = PurgeJournal.create(tmp_path / "journal")
    reader = PurgeJournal(path)
    with started([sys.executable, "-c", KILLED_STARTING_AFRESH, str(path)]) as writer:
        assert writer.wait(timeout=120) == -signal.SIGKILL
    assert reader.news() is EVERYTHING
    PurgeJournal(path).publish("packages/after")
    assert reader.news() == ["packages/after"]
