"""The download log (rules 20-22): exact lines, batching, and no loss on SIGTERM or SIGKILL.

Each download is two lines: the response's facts (``served``) right before the reference's
``download`` line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.edge import (
    SAMPLES,
    EdgeFactory,
    download_lines,
    edge_process,
    log_lines,
    seed,
    stored_wheel,
)
from support.flood import fetch_all
from support.processes import PYTHONHOSTED, started, wait_until

WHEEL = SAMPLES["wheel"]
SDIST = SAMPLES["sdist"]


@pytest.fixture
def primary(tmp_path: Path) -> str:
    url = f"file://{tmp_path}/primary"
    seed(url)
    return url


def test_one_exact_line_per_download(edge: EdgeFactory, primary: str, tmp_path: Path) -> None:
    ua = 'pip/24.0 {"installer":{"name":"pip"}} | odd\r'
    with edge(primary=primary, logs=f"file://{tmp_path}/logs", log_period=60) as url:
        httpx.get(url + WHEEL.path + "?x=1", headers={"User-Agent": "pip/24.0 {}|x"})
        httpx.get(url + SDIST.path, headers={"Range": "bytes=0-9", "User-Agent": "uv/0.5"})
        httpx.head(url + WHEEL.path)  # not a download
        httpx.get(url + WHEEL.path + ".metadata")  # a sidecar, not a download
        etag = httpx.head(url + WHEEL.path).headers["etag"]
        httpx.get(url + WHEEL.path, headers={"If-None-Match": etag})  # 304: not a download
        httpx.get(url + "/packages/00/00/" + "0" * 60 + "/gone-1.0.tar.gz")  # 404
        httpx.get(url + WHEEL.path, headers={"User-Agent": ua.replace("\r", "")})
    pairs = download_lines(tmp_path / "logs")
    assert [served for served, _ in pairs] == [
        f"served|200|{len(WHEEL.data)}|0|0|||||",
        "served|206|10|1|0|||||",
        f"served|200|{len(WHEEL.data)}|0|0|||||",
    ]
    fields = [line.split("|", 9) for _, line in pairs]
    assert [f[0] for f in fields] == ["download"] * 3
    assert [f[3] for f in fields] == [WHEEL.path, SDIST.path, WHEEL.path]  # no query string
    assert [f[2] for f in fields] == ["", "", ""]  # loopback has no country
    assert [f[4:6] for f in fields] == [["(null)", "(null)"]] * 3
    assert [f[6:9] for f in fields] == [
        ["demo-pkg", "1.0", "bdist_wheel"],
        ["demo-pkg", "1.0", "sdist"],
        ["demo-pkg", "1.0", "bdist_wheel"],
    ]
    assert [f[9] for f in fields] == ["pip/24.0 {}|x", "uv/0.5", ua.replace("\r", "")]
    assert fields[0][1].endswith(" GMT") and len(fields[0][1]) == 29


def test_country_from_trusted_proxy(edge: EdgeFactory, primary: str, tmp_path: Path) -> None:
    proxy = {
        "X-Forwarded-For": "81.2.69.160, 10.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-TLS-Protocol": "TLSv1.3",
        "X-TLS-Cipher": "TLS_AES_128_GCM_SHA256",
    }
    logs = f"file://{tmp_path}/logs"
    with edge(primary=primary, logs=logs, trust_proxy_headers=True) as url:
        httpx.get(url + WHEEL.path, headers=proxy)
    with edge(primary=primary, logs=logs, country_header="CF-IPCountry") as url:
        httpx.get(url + WHEEL.path, headers={**proxy, "CF-IPCountry": "de"})
    fields = [line.split("|", 9) for _, line in download_lines(tmp_path / "logs")]
    assert sorted((f[2], f[4], f[5]) for f in fields) == [
        ("DE", "(null)", "(null)"),  # TLS headers are not trusted there
        ("GB", "TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ]


@pytest.mark.parametrize(("downloads", "workers"), [(1, 1), (250, 1), (250, 2)])
def test_sigterm_flushes_everything(
    primary: str, tmp_path: Path, downloads: int, workers: int
) -> None:
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind, workers) as process:
        with httpx.Client(base_url=bind.url()) as client:
            for _ in range(downloads):
                assert client.get(WHEEL.path).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert len(download_lines(tmp_path / "logs")) == downloads
    assert list((tmp_path / "data" / "spool" / "downloads").iterdir()) == []


def test_a_hang_up_stops_like_sigterm(primary: str, tmp_path: Path) -> None:
    """SIGHUP (the terminal that ran the server closed) stops a single process gracefully,
    as SIGTERM does; its default action killed it with a second of lines unshipped."""
    bind = Bind("127.0.0.1", free_port())
    with edge_process(tmp_path, primary, bind) as process:
        with httpx.Client(base_url=bind.url()) as client:
            for _ in range(100):
                assert client.get(WHEEL.path).status_code == 200
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=30) == 0
    assert len(download_lines(tmp_path / "logs")) == 100
    assert list((tmp_path / "data" / "spool" / "downloads").iterdir()) == []


def test_sigkill_loses_at_most_one_interval(primary: str, tmp_path: Path) -> None:
    bind = Bind("127.0.0.1", free_port())
    spool = tmp_path / "data" / "spool" / "downloads"
    with edge_process(tmp_path, primary, bind) as process:
        with httpx.Client(base_url=bind.url()) as client:
            for _ in range(100):
                assert client.get(WHEEL.path).status_code == 200
            # Every one of these 100 is on disk once the spool holds their 200 lines.
            wait_until(lambda: spool_lines(spool) == 200)
            for _ in range(20):
                assert client.get(WHEEL.path).status_code == 200
        process.kill()
        process.wait(timeout=10)
    assert log_lines(tmp_path / "logs") == []  # no batch was due: everything is in the spool

    # A restart ships what the dead process spooled.
    with edge_process(tmp_path, primary, bind) as restarted:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=30) == 0
    pairs = download_lines(tmp_path / "logs")  # the pairs are never split
    assert 100 <= len(pairs) <= 120
    assert all(
        served == f"served|200|{len(WHEEL.data)}|0|0|||||"
        and line.endswith("python-httpx/" + httpx.__version__)
        for served, line in pairs
    )


def spool_lines(spool: Path) -> int:
    """Lines in the spool's segments; -1 when one was sealed (renamed) while being read."""
    try:
        return (
            sum(path.read_bytes().count(b"\n") for path in spool.iterdir()) if spool.is_dir() else 0
        )
    except FileNotFoundError:
        return -1


def test_served_lines_say_how_each_response_went(
    edge: EdgeFactory, primary: str, tmp_path: Path
) -> None:
    """Status, bytes sent, whether a Range was asked and where the bytes started, for the
    ranges installers and downloaders ask for, and for Ranges answered with the whole file
    (another version per If-Range, several ranges)."""
    size = len(WHEEL.data)
    asked = [
        ("bytes=-16384", 206, 16384, 1, size - 16384),  # uv's tail read
        ("bytes=1000-1999", 206, 1000, 1, 1000),  # a member inside
        ("bytes=0-499", 206, 500, 1, 0),  # the first range of a segmented download
        (f"bytes={size - 10}-", 206, 10, 1, size - 10),  # the rest, resumed
        ("bytes=0-9, 20-29", 200, size, 1, 0),  # several ranges: the whole file
        (None, 200, size, 0, 0),
    ]
    logs = f"file://{tmp_path}/logs"
    with edge(primary=primary, logs=logs, log_period=60) as url, httpx.Client(base_url=url) as c:
        for header, status, *_ in asked:
            headers = {"Range": header} if header else {}
            assert c.get(WHEEL.path, headers=headers).status_code == status
        stale = {"Range": "bytes=0-9", "If-Range": '"another-etag"'}
        assert c.get(WHEEL.path, headers=stale).status_code == 200
    served = [line for line, _ in download_lines(tmp_path / "logs")]
    expected = [f"served|{s}|{n}|{r}|{start}|||||" for _, s, n, r, start in asked]
    assert served == [*expected, f"served|200|{size}|1|0|||||"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_ends_within_the_drain_timeout_however_slow_the_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """SIGTERM with 100 downloads stalled half-way (clients that stopped reading): the
    stalled downloads are cut after ``http.drain_timeout``, each of them is logged, and the
    process exits 0.

    Before, the stop waited for the stalled clients for as long as they stayed connected,
    holding the address, and the buffered log lines with it."""
    primary = f"file://{tmp_path}/primary"
    large = stored_wheel(primary, "large-pkg", 16 * 1024 * 1024)
    monkeypatch.setenv("PYTHONHOSTED_HTTP__DRAIN_TIMEOUT", "1")
    bind = Bind("127.0.0.1", free_port())
    stalled: list[socket.socket] = []
    try:
        with edge_process(tmp_path, primary, bind, workers, stderr=subprocess.PIPE) as process:
            for _ in range(100):
                client = socket.socket()
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                client.connect((bind.host, bind.port))
                client.sendall(f"GET {large.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                stalled.append(client)
            for client in stalled:
                assert client.recv(12) == b"HTTP/1.1 200"  # then it reads no more
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
            assert process.returncode == 0
    finally:
        for client in stalled:
            client.close()
    assert b"Traceback" not in stderr
    cut = re.findall(
        rb"stopped with (\d+) requests? still in flight after http.drain_timeout \(1s\): cut",
        stderr,
    )
    assert sum(int(count) for count in cut) == 100  # one line per worker that cut any
    served = [line.split("|") for line, _ in download_lines(tmp_path / "logs")]
    assert len(served) == 100
    assert all(s[1] == "200" and int(s[2]) < len(large.data) for s in served)


def test_a_spool_that_refuses_lines_loses_none(primary: str, tmp_path: Path) -> None:
    """The spool under a 32 KB file-size limit (as a full disk, it refuses writes part-way):
    1,000 downloads (refused), 20 (taken by the next segment), 1,000 (refused again): every
    line shipped whole, each change said once when it happens, no traceback. Before, each
    refused write dropped the lines it held (and a part-written one left a torn line that
    merged with the next)."""
    bind = Bind("127.0.0.1", free_port())
    command = [*PYTHONHOSTED, "files", "serve", "--primary", primary]
    command += ["--logs", f"file://{tmp_path}/logs", "--bind", f"{bind.host}:{bind.port}"]
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONHOSTED_DATA_DIR": str(tmp_path / "data"),
        "PYTHONHOSTED_FILES__LOG_PERIOD": "1",
        "PYTHONHOSTED_FILES__LOG_SPOOL_SYNC_INTERVAL": "0.2",
        # No bytecode written: under a file-size limit Python would leave truncated .pyc files.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    shell = ["bash", "-c", 'ulimit -f 32 && exec "$@"', "edge", *command]
    shipped = 0
    with started(shell, env=env, stderr=subprocess.PIPE) as process:
        wait_for_port(bind, timeout=60, process=process)
        for downloads in (1_000, 20, 1_000):
            answers = asyncio.run(fetch_all(bind.url(), [WHEEL.path] * downloads, concurrency=20))
            assert [answer.status for answer in answers] == [200] * downloads
            shipped += downloads
            lines = 2 * shipped
            wait_until(lambda n=lines: len(log_lines(tmp_path / "logs")) == n, timeout=60)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0
    said = [line.split(" ", 3)[-1] for line in stderr.decode().splitlines()[1:]]
    refused = (
        "pythonhosted.eventlog: the downloads spool refuses lines ([Errno 27] File too large): "
        "holding them in memory, up to 200000, and shipping them from there"
    )
    again = "pythonhosted.eventlog: the downloads spool takes lines again"
    # Said when it changes: refused first, then taken again and refused by turns (how often
    # depends on how the downloads fall between syncs; the 20 always fit a new segment).
    changes = [line for line in said if not line.startswith("pythonhosted.eventlog: stored ")]
    assert changes[0] == refused and again in changes
    assert changes == [(refused, again)[index % 2] for index in range(len(changes))]
    assert len(download_lines(tmp_path / "logs")) == 2_020
