"""``pythonhosted serve``: starts from nothing, prints working URLs, flushes logs on SIGTERM."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from pythonhosted.camo import sign_url
from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.processes import started


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
    command = [sys.executable, "-m", "pythonhosted", "serve", "--data-dir", str(tmp_path / "var")]
    with started(command, env=env, stdout=subprocess.PIPE) as process:
        wait_for_port(bind, timeout=30)
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
    with started(command, env=env) as process:
        wait_for_port(bind, timeout=30)
        responses = [httpx.get(url) for url in urls]
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
    assert len(lines) == 2
