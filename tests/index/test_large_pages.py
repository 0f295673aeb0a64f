"""A project with tens of thousands of files: its page is rendered once and shared, and slow
readers of it hold pieces, not copies.

An 18,000-file project's page is 4.7 MB; each slow reader used to hold a whole copy of it
(measured: 3.9 MB a reader here; 40 readers of a 50,000-file page: +890 MB), then the pieces
the server queued (~1.5 MB: 500 readers of a 6 MB root page, +760 MB), and now about one
piece (~90 KB), as on the files edge.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.catalogs import write_catalog
from support.memory import peak, settled, slow_readers
from support.processes import started

FILES = 18_000
READERS = 500
# About one piece and granian's own: 40-210 KB at the peak here (the pieces queued, before:
# 230-1,490 KB, mostly over 1 MB; how much granian had queued by then varied from run to run).
PER_READER_LIMIT = 512 * 1024


@pytest.mark.long
def test_slow_readers_of_a_large_page_share_one_copy(tmp_path: Path) -> None:
    write_catalog(tmp_path / "primary", "big", FILES)
    bind = Bind("127.0.0.1", free_port())
    command = [sys.executable, "-m", "pythonhosted", "index", "serve"]
    command += ["--primary", f"file://{tmp_path}/primary", "--bind", f"{bind.host}:{bind.port}"]
    env = {**os.environ, "PYTHONHOSTED_DATA_DIR": str(tmp_path / "data")}
    with started(command, env=env) as index:
        wait_for_port(bind, timeout=60, process=index)
        page = httpx.get(f"http://{bind.host}:{bind.port}/simple/big/", timeout=60)
        assert page.status_code == 200 and page.text.count("<a href=") == FILES
        for sock in slow_readers(bind, "/simple/big/", 2):  # what idle means
            sock.close()
        idle = settled(index.pid)
        readers = slow_readers(bind, "/simple/big/", READERS)
        try:
            settled(index.pid)
            loaded = peak(index.pid)  # what the readers made it hold at most
        finally:
            for sock in readers:
                sock.close()
    assert len(page.content) > 4 * 2**20  # each reader would hold this much with a copy
    assert (loaded - idle) / READERS < PER_READER_LIMIT
