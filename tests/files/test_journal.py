"""The purge journal the workers of one `files serve` share (one purge, every cache)."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

from pythonhosted.files.journal import PurgeJournal
from support.processes import started

PUBLISH = """
import sys
from pathlib import Path
from pythonhosted.files.journal import PurgeJournal
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
