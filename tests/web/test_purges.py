"""The purge journal the workers of one `files serve` share (one purge, every cache)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from subprocess import Popen

import httpx

from pythonhosted.web.purges import EVERYTHING, PurgeJournal
from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.edge import SAMPLES, seed
from support.processes import started, stop_group

SDIST = SAMPLES["sdist"]

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


# `files serve --workers 2` under a file-size limit: the journal's writes past it fail as on a
# full disk.
SERVE_LIMITED = """
import resource, signal, sys
from pythonhosted.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit: EFBIG, as ENOSPC on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
main(["files", "serve", "--workers", "2"])
"""
BEARER = {"authorization": "Bearer purge-token"}


@contextmanager
def edge_of_two_workers(tmp_path: Path, file_size_limit: int) -> Iterator[tuple[str, Popen[bytes]]]:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    bind = Bind("127.0.0.1", free_port())
    env = {
        **os.environ,
        "PYTHONHOSTED_DATA_DIR": str(tmp_path / "data"),
        "PYTHONHOSTED_FILES__PRIMARY": primary,
        "PYTHONHOSTED_FILES__BIND": f"{bind.host}:{bind.port}",
        "PYTHONHOSTED_FILES__PURGE_SECRET": "purge-token",
    }
    server = [sys.executable, "-c", SERVE_LIMITED, str(file_size_limit)]
    with started(server, env=env, stderr=subprocess.PIPE) as edge:
        wait_for_port(bind, timeout=60)
        yield bind.url(), edge


def _purge_path(n: int) -> str:
    return f"/packages/ab/cd/{'e' * 60}/f{n:04d}.whl"  # 88 bytes as a journal entry


def test_a_purge_of_one_file_leaves_every_other_file_served(tmp_path: Path) -> None:
    """Each worker, reading another's purges before a lookup, looked up the last purged key in
    place of the one asked for: the first request of every worker after any purge was a 404
    for a file that is there."""
    with edge_of_two_workers(tmp_path, 2**30) as (url, _):
        purged = httpx.request("PURGE", url + _purge_path(0), headers=BEARER)
        assert purged.status_code == 200
        # New connections each: the kernel hands them to either worker.
        assert [httpx.get(url + SDIST.path).status_code for _ in range(20)] == [200] * 20


def test_a_purge_the_full_journal_refuses_is_503_and_the_edge_serves_on(tmp_path: Path) -> None:
    """A purge the journal could not record (its disk full) would reach only the worker that
    took it: it was a 500 with a traceback in the log. It is a 503 that says to try again; the
    purges before it were acknowledged, and the edge serves on."""
    with edge_of_two_workers(tmp_path, 4096) as (url, edge):
        with httpx.Client(base_url=url) as client:
            answers = []
            for n in range(1000):
                answer = client.request("PURGE", _purge_path(n), headers=BEARER)
                answers.append(answer.status_code)
                if answer.status_code != 200:
                    break
            assert (answers.count(200), answers[-1]) == ((4096 - 16) // 88, 503)
            reason = "Purge not recorded for every worker (File too large); try again\n"
            assert (answer.text, answer.headers["retry-after"]) == (reason, "1")
            assert [client.get(SDIST.path).status_code for _ in range(20)] == [200] * 20
        stop_group(edge)
        _, log = edge.communicate(timeout=60)
    assert b"Traceback" not in log
    assert log.count(b"not shared with the other workers: File too large") == 1
