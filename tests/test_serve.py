"""``pythonhosted serve``: starts from nothing, prints working URLs, flushes logs on SIGTERM."""

from __future__ import annotations

import gzip
import os
import re
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from pythonhosted.camo import sign_url
from pythonhosted.web.h1.server import RECLAIM_BATCH
from pythonhosted.web.server import Bind, free_port, running, wait_for_port
from support.processes import started, wait_until
from support.serve_crowd import waiting_crowd, wired
from support.sockets import idle_sockets


def test_serve_from_an_empty_data_dir(tmp_path: Path) -> None:
    bind = Bind("127.0.0.1", free_port())
    docs = Bind("127.0.0.1", free_port())
    camo = Bind("127.0.0.1", free_port())
    linehaul = Bind("127.0.0.1", free_port())
    stats = Bind("127.0.0.1", free_port())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTHONHOSTED_")},
        "PYTHONHOSTED_FILES__BIND": f"{bind.host}:{bind.port}",
        "PYTHONHOSTED_CONVEYOR__BIND": f"{docs.host}:{docs.port}",
        "PYTHONHOSTED_CAMO__BIND": f"{camo.host}:{camo.port}",
        "PYTHONHOSTED_LINEHAUL__BIND": f"{linehaul.host}:{linehaul.port}",
        "PYTHONHOSTED_STATS_WEB__BIND": f"{stats.host}:{stats.port}",
    }
    addresses = [bind, docs, camo, linehaul, stats]
    command = [sys.executable, "-m", "pythonhosted", "serve", "--data-dir", str(tmp_path / "var")]
    with started(command, env=env, stdout=subprocess.PIPE) as process:
        wait_for_port(bind, timeout=60, process=process)
        assert process.stdout is not None
        banner = []
        while not banner or "Range: bytes=" not in banner[-1]:  # the banner's last line
            line = process.stdout.readline().decode()
            assert line, "serve exited before printing its banner"
            banner.append(line)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    urls = [m.group(1) for line in banner if (m := re.search(r"curl -sSI (\S+)", line))]
    assert [url.rsplit("/", 1)[1] for url in urls] == [
        "hello_pythonhosted-1.0.0-py3-none-any.whl",
        "hello_pythonhosted-1.0.0.tar.gz",
    ]

    sdist = urls[1].rsplit("/", 1)[1]

    # Second start: the samples are already there, the same URLs are printed and work.
    errors = tmp_path / "second.err"
    with errors.open("wb") as stderr, started(command, env=env, stderr=stderr.fileno()) as process:
        wait_for_port(bind, timeout=60, process=process)
        responses = [httpx.get(url) for url in urls]
        # A path whose percent-encoded bytes are not UTF-8, at every address: the stats web
        # rendered it in its 404 page and answered 500 with a traceback once on web/h1.
        odd = [httpx.get(f"{each.url()}/a%ff%fe%80/").status_code for each in addresses]
        legacy = httpx.get(f"{bind.url()}/packages/source/h/hello-pythonhosted/{sdist}")
        site = httpx.get(f"{docs.url()}/hello-pythonhosted/")
        key = (tmp_path / "var" / "camo.key").read_bytes().strip()
        # The generated key signs; the default policy still refuses loopback upstreams.
        proxied = httpx.get(sign_url("http://127.0.0.1:1/logo.png", key, base=camo.url()))
        forged = httpx.get(sign_url("http://127.0.0.1:1/logo.png", b"wrong", base=camo.url()))
        analytics = httpx.get(f"{linehaul.url()}/_health")
        stats_health = httpx.get(f"{stats.url()}/_health")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert [r.status_code for r in responses] == [200, 200]
    assert odd == [400, 404, 404, 404, 404]  # the files edge refuses such a path
    assert "Traceback" not in errors.read_text(errors="replace")
    assert (legacy.status_code, legacy.headers["location"]) == (
        302,
        urls[1].replace(bind.url(), ""),
    )
    assert site.status_code == 200
    assert proxied.headers["x-camo-error"] == "address 127.0.0.1 is in refused range 127.0.0.0/8"
    assert forged.status_code == 404
    assert (tmp_path / "var" / "camo-cache" / "slot-0").is_dir()  # the cache is on by default
    assert (analytics.status_code, analytics.text) == (200, "OK\n")
    assert (stats_health.status_code, stats_health.text) == (200, "OK\n")
    assert any(line.startswith(f"  stats web   {stats.url()}/") for line in banner)
    assert forged.headers["x-camo-error"] != proxied.headers["x-camo-error"]
    assert site.headers["content-type"].startswith("text/html")
    assert responses[0].headers["x-pypi-file-project"] == "hello-pythonhosted"
    batches = sorted((tmp_path / "var" / "logs" / "downloads").rglob("*.log.gz"))
    lines = [line for path in batches for line in gzip.decompress(path.read_bytes()).splitlines()]
    # Two downloads, each a served line (a whole 200) and its download line.
    sizes = [len(response.content) for response in responses]
    assert [line.split(b"|", 1)[0] for line in lines] == [b"served", b"download"] * 2
    assert sorted(lines[0::2]) == sorted(b"served|200|%d|0|0|||||" % size for size in sizes)


SERVICES = ["files", "conveyor", "camo", "linehaul", "stats_web"]
# serve's own open-file limit in the test below: 3,072 past the reserve, too few for the
# connection floor, so a sixth (512) for each of the four smaller servers (the stats web
# among them) and the rest (1,024) for the files edge.
SERVE_DESCRIPTORS = 4096
FLOOD = 2_500  # idle connections to each of two services: 5,000 in all, past the limit


def test_a_flood_on_two_services_leaves_the_others_their_descriptors(tmp_path: Path) -> None:
    """All of ``serve`` is one process with one open-file limit. When each server could take
    the whole of it, 30,000 idle connections to the files edge and the stats web took every
    descriptor: the other services stopped answering and the spool, the ingest pass and the
    redirects reload failed with EMFILE. Each server now gets its share, so what floods one
    waits in its backlog (or takes the place of its idle longest) and the rest answer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * FLOOD + 1_000:
        pytest.skip(f"the flood needs {2 * FLOOD + 1_000} descriptors here; the limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process opens 5,000
    binds = {name: Bind("127.0.0.1", free_port()) for name in SERVICES}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTHONHOSTED_")},
        **{f"PYTHONHOSTED_{name.upper()}__BIND": str(bind) for name, bind in binds.items()},
        "PYTHONHOSTED_HTTP__HEADER_TIMEOUT": "120",  # the flood stays for the whole test
    }
    limited = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({SERVE_DESCRIPTORS}, {SERVE_DESCRIPTORS})); "
        "os.execv(sys.executable, [sys.executable, '-m', 'pythonhosted', *sys.argv[1:]])"
    )
    command = [sys.executable, "-c", limited, "serve", "--data-dir", str(tmp_path / "var")]
    try:
        with started(command, env=env, stderr=subprocess.PIPE) as process:
            for bind in binds.values():
                wait_for_port(bind, timeout=60, process=process)
            with idle_sockets(binds["files"], FLOOD), idle_sockets(binds["stats_web"], FLOOD):
                # both hold theirs, each less at most the idle it last closed for the waiting
                wait_until(lambda: _descriptors(process.pid) >= 1_024 + 512 - 2 * RECLAIM_BATCH)
                for name in ("conveyor", "camo", "linehaul"):
                    answer = httpx.get(f"{binds[name].url()}/_health")
                    assert (name, answer.status_code) == (name, 200)
                held = _descriptors(process.pid)
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=60)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert held < SERVE_DESCRIPTORS - 512
    assert b"Too many open files" not in errors
    assert (
        b"http.max_connections lowered from 16384 to what the open-file limit (4096) allows: "
        + f"1024 on {binds['files']}, 512 on {binds['conveyor']}".encode()
        in errors
    )


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


CROWD = 32  # asyncio's default pool is at most 32 threads, whatever the machine
OWN_THREADS = ("stats-web", "index-render")


def test_a_crowd_waiting_on_the_warehouse_leaves_downloads_and_pages_their_threads(
    tmp_path: Path,
) -> None:
    """``serve`` runs every service on one event loop. The stats web's answers ran in the
    loop's default thread pool (6 threads on 2 cores), which the files edge needs for a local
    store's ``stat`` and the index for its page renders: 32 cold stats questions waiting for
    a warehouse writer held every thread, and a download and an index page waited for them
    (here 60 s; in production up to ``read_wait``, 10 s, for each round of questions). The
    stats web's long work now has threads of its own, so neither waits."""
    wiring = wired(tmp_path, max_pending=CROWD, read_wait=60)
    wheel = next(wiring.files.rglob("demo_pkg-*.whl"))
    with running(wiring.app) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/api/packages/demo-pkg/recent").status_code == 200  # version read
        with waiting_crowd(base, wiring, CROWD):
            try:
                download = client.get(f"/{wheel.relative_to(wiring.files)}")
                page = client.get("/simple/demo-pkg/")
            except httpx.TimeoutException:
                pytest.fail("a download or an index page waited for the stats web's crowd")
            still_waiting = len(wiring.stats.admission)
    assert (download.status_code, download.content) == (200, wheel.read_bytes())
    assert page.status_code == 200
    assert wheel.name in page.text
    assert still_waiting == CROWD  # the crowd was waiting for the writer throughout
    # each service's threads ended with its stop
    assert [t.name for t in threading.enumerate() if t.name.startswith(OWN_THREADS)] == []
