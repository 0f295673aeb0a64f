"""What an operator sees of ``pythonhosted serve``, checked against what the docs promise.

One run at DEBUG with ``--log-json``, the access log on and every secret set to a marker of
its own, through refusals (wrong purge tokens and admin secret, a bearer token the index does
not ask for, a hostile path), then a stop. What its output must hold:

- no secret anywhere: stdout, stderr, any answer, any ``/metrics``;
- stderr is one JSON object per line, whatever was asked;
- every service writes access lines (``http.access_log`` is a setting of every service;
  camo's requests went unlogged);
- each service's ``/metrics`` exports exactly the families the README and docs name: none
  undocumented, none documented but missing (the index's series, counted under ``serve``,
  were exported nowhere).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pythonhosted.camo import sign_url
from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.processes import started, wait_until
from support.stats_warehouse import NO_PREWARM

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("files", "conveyor", "camo", "linehaul", "stats_web")
# Words of the docs shaped like a metric name that are something else: a warehouse table, a
# bench script, modules.
NOT_METRICS = {
    "linehaul_loaded_files",
    "linehaul_ingest",
    "files_base_url",
    "files_app",
    "camo_app",
}
METRIC_NAME = re.compile(r"(?<![.\w/-])(?:files|index|conveyor|camo|linehaul|stats_web)_[a-z_]+\b")


def _documented_metrics() -> set[str]:
    texts = [(REPO / "README.md").read_text()]
    texts += [path.read_text() for path in sorted((REPO / "docs").glob("*.md"))]
    return {name for text in texts for name in METRIC_NAME.findall(text)} - NOT_METRICS


def _families(text: str) -> set[str]:
    """The names a scrape exposes families under (a counter's with its ``_total``)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def test_serve_keeps_secrets_logs_lines_and_exports_what_the_docs_name(tmp_path: Path) -> None:
    secrets = {
        name: f"marker{uuid.uuid4().hex}"
        for name in (
            "PYTHONHOSTED_FILES__ADMIN_SECRET",
            "PYTHONHOSTED_FILES__PURGE_SECRET",
            "PYTHONHOSTED_CAMO__KEY",
            "PYTHONHOSTED_CAMO__CACHE_PURGE_SECRET",
            "AWS_SECRET_ACCESS_KEY",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            "CLICKHOUSE_PASSWORD",
        )
    }
    sent = {name: f"marker{uuid.uuid4().hex}" for name in ("bearer", "wrong_admin", "cookie")}
    binds = {service: Bind("127.0.0.1", free_port()) for service in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONHOSTED_")}
    env.update(secrets)
    env.update(NO_PREWARM)
    env.update({f"PYTHONHOSTED_{s.upper()}__BIND": f"{b.host}:{b.port}" for s, b in binds.items()})
    env.update(
        {
            "PYTHONHOSTED_LOG_LEVEL": "DEBUG",
            "PYTHONHOSTED_HTTP__ACCESS_LOG": "true",
            "PYTHONHOSTED_FILES__LOG_PERIOD": "1",
            "PYTHONHOSTED_LINEHAUL__INGEST_INTERVAL": "1",
            "PYTHONHOSTED_LINEHAUL__PUBLISH_INTERVAL": "1",
        }
    )
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    data_dir = str(tmp_path / "var")
    command = [sys.executable, "-m", "pythonhosted", "--log-json", "serve", "--data-dir", data_dir]
    answers: list[httpx.Response] = []
    scrapes: dict[str, str] = {}
    with (
        out.open("wb") as stdout,
        err.open("wb") as stderr,
        started(command, env=env, stdout=stdout, stderr=stderr) as process,
    ):
        banner = wait_until(lambda: "Range: bytes=" in out.read_text() and out.read_text())
        wheel = re.search(r"curl -sSI (\S+\.whl)", banner)
        assert wheel is not None
        path = httpx.URL(wheel[1]).path
        files, camo = binds["files"].url(), binds["camo"].url()

        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        admin = secrets["PYTHONHOSTED_FILES__ADMIN_SECRET"]
        camo_key = secrets["PYTHONHOSTED_CAMO__KEY"].encode()
        answers += [
            httpx.get(wheel[1], headers={"Cookie": f"session={sent['cookie']}"}),
            httpx.get(wheel[1], headers={"X-PyPI-Admin": sent["wrong_admin"]}),
            httpx.get(wheel[1], headers={"X-PyPI-Admin": admin, "X-Force-Backend": "PRIMARY"}),
            httpx.request("PURGE", files + path, headers=bearer(sent["bearer"])),
            httpx.request(
                "PURGE", files + path, headers=bearer(secrets["PYTHONHOSTED_FILES__PURGE_SECRET"])
            ),
            httpx.get(files + "/simple/hello-pythonhosted/", headers=bearer(sent["bearer"])),
            httpx.get(files + "/packages/aa/bb/%0a%1b%5b31m" + "x" * 2000 + "/y.whl"),
            httpx.get(f"{binds['conveyor'].url()}/hello-pythonhosted/"),
            httpx.get(sign_url("http://127.0.0.1:1/a.png", camo_key, base=camo)),
            httpx.request("PURGE", camo + "/x", headers=bearer(sent["bearer"])),
            httpx.get(f"{binds['stats_web'].url()}/api/v1/projects/hello-pythonhosted/summary"),
            httpx.get(f"{binds['linehaul'].url()}/_health"),
        ]
        for service, bind in binds.items():
            wait_for_port(bind, timeout=60)
            scrapes[service] = httpx.get(f"{bind.url()}/metrics").text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0

    texts = [out.read_text(), err.read_text(), *scrapes.values()]
    texts += [f"{answer.headers}\n{answer.text}" for answer in answers]
    for name, marker in {**secrets, **sent}.items():
        assert not any(marker in text for text in texts), f"{name} leaked"

    records = [json.loads(line) for line in err.read_text().splitlines()]
    assert all(
        isinstance(r, dict) and {"ts", "level", "logger", "msg"} <= r.keys() for r in records
    )
    logged = {r["service"] for r in records if r["logger"] == "pythonhosted.access"}
    assert logged == {"files", "index", "conveyor", "camo", "stats_web", "linehaul"}

    exported = {service: _families(text) for service, text in scrapes.items()}
    exported_names = set().union(*exported.values())
    documented = _documented_metrics()

    assert sorted(exported_names - documented) == []
    assert sorted(documented - exported_names) == []
    assert "index_requests_total" in exported["files"]  # the index answers on the edge's address
