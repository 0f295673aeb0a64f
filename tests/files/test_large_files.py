"""Large bodies: cached ones kept in pieces, local files read piece by piece, and a client
that leaves stops the reading."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from pythonhosted.web.objects import FILE_RAMP_BYTES, PREAD_MAX, SEND_PIECE
from support.edge import EdgeFactory, stored_wheel
from support.metrics import sample
from support.processes import wait_until


def ranges_of(size: int) -> list[tuple[int, int]]:
    """Byte ranges [start, end) that start, end and cross piece boundaries, small and large."""
    piece = SEND_PIECE
    return [
        (0, 1),
        (piece - 10, piece + 10),  # across the first boundary
        (piece, 2 * piece),  # exactly one piece
        (3, 3 * piece + 7),  # several pieces, larger than one send
        (size - 8192, size),  # an installer's suffix read
        (size - PREAD_MAX - 1, size),  # just over one pread
        (size - 1, size),
    ]


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "local-file"])
def test_large_bodies_and_ranges_are_exact(edge: EdgeFactory, tmp_path: Path, cached: bool) -> None:
    """Past the ramp of small pieces too: the file is larger than ``FILE_RAMP_BYTES``."""
    primary = f"file://{tmp_path}/primary"
    wheel = stored_wheel(primary, "big-wheel", FILE_RAMP_BYTES + 3 * SEND_PIECE + 123)
    size = len(wheel.data)
    limit = 2 * size if cached else 2**20  # cached: the whole body fits the memory cache
    with edge(primary=primary, cache_object_max_bytes=limit, cache_max_bytes=4 * size) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            whole = [client.get(wheel.path) for _ in range(2)]  # the second from memory
            ranges = {
                (start, end): client.get(wheel.path, headers={"Range": f"bytes={start}-{end - 1}"})
                for start, end in ranges_of(size)
            }
        cached_bytes = sample(url, "files_cache_bytes")
    for response in whole:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(size)
        assert response.content == wheel.data
    for (start, end), response in ranges.items():
        assert response.status_code == 206
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert response.content == wheel.data[start:end]
    assert (cached_bytes >= size) is cached


def test_a_client_that_leaves_stops_the_reading(edge: EdgeFactory, tmp_path: Path) -> None:
    """The server takes whatever is sent after a client left without complaint, so the
    responder must notice the departure itself, or it reads a large file to its end.

    Noticing takes the server's threads and the loop a few turns; on a loaded machine (two
    busy loops beside three test workers) ~24 MB went out meanwhile, so the file is 128 MB
    and the check is that most of it was never read."""
    primary = f"file://{tmp_path}/primary"
    wheel = stored_wheel(primary, "huge-wheel", 128 * 2**20)
    with edge(primary=primary) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.sendall(f"GET {wheel.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")

        scrapes = 0

        def in_flight() -> float:
            nonlocal scrapes
            scrapes += 1
            return sample(url, "files_requests_in_flight")

        # The download has finished once the scrape is the only request left. (Waiting for
        # one 200 instead was a race: the scrapes are 200s too, and one taken while the
        # download was still being cut, the download's end and the next scrape made two.)
        wait_until(lambda: in_flight() == 1, timeout=60)
        # Every earlier scrape and the download, counted once, as the 200 its head said.
        assert sample(url, "files_requests_total", status="200") == scrapes + 1
        sent = sample(url, "files_bytes_sent_total")
    assert 0 < sent < len(wheel.data) / 2
