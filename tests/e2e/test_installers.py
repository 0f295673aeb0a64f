"""Real installers against the system: pip and uv install through the index and the edge.

Throwaway virtual environments, the project's own index and files edge on loopback, and
nothing else: pip and uv are isolated from the machine's configuration, caches and indexes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import pytest
from click.testing import CliRunner

from pythonhosted.catalog import get_record, record_key
from pythonhosted.cli import main
from pythonhosted.config import FilesSettings, Settings
from pythonhosted.files.service import build_edge
from pythonhosted.files.upload import upload
from pythonhosted.index.service import build_app as build_index
from pythonhosted.linehaul.ingest import ingest_once
from pythonhosted.linehaul.publish import publish_with
from pythonhosted.samples import build_sdist, build_wheel
from pythonhosted.storage import open_store
from pythonhosted.web.router import PrefixRouter
from pythonhosted.web.server import Bind, free_port, running
from support.processes import PYTHONHOSTED, started, wait_listening, wait_until
from support.stats_warehouse import NO_PREWARM
from support.venvs import pip_venv as pip_venv_with

UV = Path(sys.executable).parent / "uv"
JSON = "application/vnd.pypi.simple.v1+json"
# Every listening address of `pythonhosted serve` (and any *.bind setting), on a free port.
SERVE_BINDS = ("FILES", "INDEX", "CONVEYOR", "CAMO", "LINEHAUL", "STATS_WEB")
PACKAGES = [
    build_wheel("e2e-base", "1.0"),
    build_sdist("e2e-base", "1.0"),
    build_wheel("e2e-app", "2.0", requires=["e2e-base>=1.0"]),
    build_sdist("e2e-app", "2.0", requires=["e2e-base>=1.0"]),
    build_wheel("e2e-plain", "0.1"),  # served without a .metadata sidecar
]


@dataclass
class System:
    front: PrefixRouter  # index on /simple, files edge elsewhere, as `pythonhosted serve` runs
    logs: Path


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_CACHE_DIR": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "UV_NO_CONFIG": "1",
            "UV_NO_CACHE": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "HOME": str(tmp_path / "home"),
        }
    )
    return env


async def _publish(primary: str) -> None:
    store = open_store(primary)
    for name, data in PACKAGES:
        await upload(store, name, data)
    # Make e2e-plain look like a wheel uploaded before PEP 658: no sidecar, no hash in the index.
    record = await get_record(store, "e2e-plain", PACKAGES[-1][0])
    assert record is not None
    await store.delete(record.path[1:] + ".metadata")
    stripped = dataclasses.replace(record, metadata_sha256=None)
    await store.put(record_key("e2e-plain", record.filename), stripped.to_json())


@pytest.fixture
def system(tmp_path: Path) -> System:
    primary = f"file://{tmp_path}/primary"
    asyncio.run(_publish(primary))
    settings = Settings(
        data_dir=tmp_path / "data",
        files=FilesSettings(primary=primary, logs=f"file://{tmp_path}/logs"),
    )
    front = PrefixRouter([("/simple", build_index(settings))], default=build_edge(settings))
    return System(front, tmp_path / "logs")


def _metric(url: str, line_start: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _log_lines(logs: Path, kind: str) -> list[str]:
    paths = sorted((logs / kind).rglob("*.log.gz"))
    return [line for p in paths for line in gzip.decompress(p.read_bytes()).decode().splitlines()]


def test_pip_and_uv_install_through_the_system(system: System, tmp_path: Path) -> None:
    env = _isolated_env(tmp_path)
    pip_venv, uv_venv = tmp_path / "pip-venv", tmp_path / "uv-venv"
    pip_venv_with(pip_venv, env)
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(uv_venv)], check=True)
    with running(system.front) as url:
        index = url + "/simple/"
        pip = subprocess.run(
            [str(pip_venv / "bin/pip"), "install", "--index-url", index, "e2e-app"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert pip.returncode == 0, pip.stdout + pip.stderr
        metadata_by_pip = _metric(url, 'files_sidecars_served_total{kind="metadata"}')
        uv = subprocess.run(
            [str(UV), "pip", "install", "--python", str(uv_venv / "bin/python"),
             "--index-url", index, "e2e-app", "e2e-plain"],
            env=env,
            capture_output=True,
            text=True,
        )  # fmt: skip
        assert uv.returncode == 0, uv.stdout + uv.stderr
        metadata_by_both = _metric(url, 'files_sidecars_served_total{kind="metadata"}')
        ranges = _metric(url, 'files_requests_total{status="206"}')

    for venv, modules in ((pip_venv, "e2e_app, e2e_base"), (uv_venv, "e2e_app, e2e_plain")):
        assert subprocess.run([str(venv / "bin/python"), "-c", f"import {modules}"]).returncode == 0
    # Both resolved from PEP 658 metadata instead of downloading wheels; uv read the wheel
    # that has none with range requests.
    assert metadata_by_pip == 2
    assert metadata_by_both == 4
    assert ranges >= 1

    pip_version = subprocess.run(
        [str(pip_venv / "bin/pip"), "--version"], env=env, capture_output=True, text=True
    ).stdout.split()[1]
    downloads = _log_lines(system.logs, "downloads")  # a served line before each download's
    agents = [line.split("|", 9)[9] for line in downloads[1::2]]
    assert sum(agent.startswith(f"pip/{pip_version} ") for agent in agents) == 2
    assert sum(agent.startswith("uv/0.13.8 ") for agent in agents) >= 3
    assert all(served.startswith("served|") for served in downloads[::2])
    simple_agents = [line.split("|", 9)[9] for line in _log_lines(system.logs, "simple")]
    assert sum(agent.startswith("pip/") for agent in simple_agents) == 2
    assert sum(agent.startswith("uv/") for agent in simple_agents) == 3

    # The analytics path: ingest the batches, publish them, ask for the breakdown.
    warehouse = f"duckdb://{tmp_path}/warehouse.duckdb"
    results = open_store(f"file://{tmp_path}/results")
    asyncio.run(ingest_once(open_store(f"file://{system.logs}"), results, lease_timeout=60))
    asyncio.run(publish_with(results, warehouse, batch_files=100))
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    fields = ["installer", "installer-version", "python", "system"]
    today = datetime.now(UTC).date().isoformat()  # stats counts complete days unless asked
    by = [arg for field in fields for arg in ("--by", field)]
    rows = _stats(warehouse, "e2e-app", "--start", today, "--end", today, *by)
    assert sorted(tuple(row[field] for field in [*fields, "download_count"]) for row in rows) == [
        ("pip", pip_version, python, "Linux", 1),
        ("uv", "0.13.8", python, "Linux", 1),
    ]
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        simple = db.execute(
            "SELECT details.installer.name, count(*) FROM simple_requests GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert simple == [("pip", 2), ("uv", 3)]


def _stats(warehouse: str, project: str, *args: str) -> list[dict[str, object]]:
    result = CliRunner().invoke(
        main, ["stats", project, "--format", "json", "--warehouse", warehouse, *args]
    )
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.output)["rows"]
    return rows


class Installers:
    """pip and uv installing into fresh target directories, isolated from the machine."""

    def __init__(self, tmp_path: Path, index: str) -> None:
        self.tmp_path = tmp_path
        self.index = index
        self.env = _isolated_env(tmp_path)
        self.pip = str(pip_venv_with(tmp_path / "pip-venv", self.env))
        self.runs = 0

    def install(self, tool: str, requirement: str) -> str | None:
        """The version of e2e-yank ``tool`` installed for ``requirement``; None if it failed."""
        self.runs += 1
        target = self.tmp_path / f"target-{self.runs}"
        command = {
            "pip": [self.pip, "install"],
            "uv": [str(UV), "pip", "install", "--python", sys.executable],
        }[tool]
        done = subprocess.run(
            [*command, "--target", str(target), "--index-url", self.index, requirement],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            return None
        source = (target / "e2e_yank" / "__init__.py").read_text()
        return source.split('"')[1]  # __version__ = "…"


@pytest.mark.long
def test_yank_and_delete_with_pip_and_uv_through_serve(tmp_path: Path) -> None:
    """The operator's round: upload, list, yank, unyank, delete, with a running `serve`, and
    what pip and uv install at each step."""
    data = tmp_path / "var"
    binds = {name: Bind("127.0.0.1", free_port()) for name in SERVE_BINDS}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTHONHOSTED_")},
        **{f"PYTHONHOSTED_{name}__BIND": f"{b.host}:{b.port}" for name, b in binds.items()},
        "PYTHONHOSTED_DATA_DIR": str(data),
        "PYTHONHOSTED_FILES__PRIMARY": f"file://{data}/files",
        "PYTHONHOSTED_LOG_JSON": "true",
        **NO_PREWARM,
    }
    dist = tmp_path / "dist"
    dist.mkdir()
    for version in ("1.0", "2.0"):
        name, content = build_wheel("e2e-yank", version)
        (dist / name).write_bytes(content)
    newer = "e2e_yank-2.0-py3-none-any.whl"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [*PYTHONHOSTED, "files", *args]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )

    base = binds["FILES"].url()

    def page() -> dict[str, object]:
        response = httpx.get(f"{base}/simple/e2e-yank/", headers={"Accept": JSON})
        return {entry["filename"]: entry["yanked"] for entry in response.json()["files"]}

    log = tmp_path / "serve.log"
    with (
        log.open("wb") as stderr,
        started([*PYTHONHOSTED, "serve"], env=env, stderr=stderr.fileno()) as serve,
    ):
        wait_listening(serve, binds["FILES"].host, binds["FILES"].port, log)
        uploaded = cli("upload", *sorted(str(p) for p in dist.iterdir()))
        assert uploaded.returncode == 0, uploaded.stderr
        listed = json.loads(cli("list", "--project", "e2e-yank", "--format", "json").stdout)
        assert [f["filename"] for f in listed["files"]] == [
            "e2e_yank-1.0-py3-none-any.whl",
            newer,
        ]
        path = listed["files"][1]["path"]
        installers = Installers(tmp_path, f"{base}/simple/")
        assert [installers.install(tool, "e2e-yank") for tool in ("pip", "uv")] == ["2.0"] * 2

        yanked = cli("yank", "e2e-yank==2.0", "--reason", "broken on 3.13")
        assert (yanked.returncode, yanked.stdout) == (0, f"yanked {newer}\n")
        wait_until(lambda: page()[newer] == "broken on 3.13")
        # Yanked: skipped unless pinned, by both.
        assert [installers.install(tool, "e2e-yank") for tool in ("pip", "uv")] == ["1.0"] * 2
        assert [installers.install(tool, "e2e-yank==2.0") for tool in ("pip", "uv")] == ["2.0"] * 2
        unyanked = cli("unyank", "e2e-yank==2.0")
        assert (unyanked.returncode, unyanked.stdout) == (0, f"unyanked {newer}\n")
        wait_until(lambda: page()[newer] is False)

        legacy = f"{base}/packages/py3/e/e2e-yank/{newer}"
        assert httpx.get(legacy).headers["location"] == path
        assert httpx.get(base + path).status_code == 200  # now in the edge's memory cache
        unconfirmed = cli("delete", newer)
        assert (unconfirmed.returncode, unconfirmed.stderr) == (
            1,
            "error: refusing to delete without --yes (stdin is not a terminal)\n",
        )
        deleted = cli("delete", newer, "--yes")
        assert (deleted.returncode, deleted.stdout) == (0, f"deleted {path}\n")
        # The edge forgot it at once (serve's own purge secret, found in the data dir); the
        # archive of an embedded serve never had a copy, so it is gone.
        assert httpx.get(base + path).status_code == 404
        assert httpx.get(base + path + ".metadata").status_code == 404
        wait_until(lambda: newer not in page())
        wait_until(lambda: httpx.get(legacy).status_code == 404)
        assert [installers.install(tool, "e2e-yank") for tool in ("pip", "uv")] == ["1.0"] * 2
        assert [installers.install(tool, "e2e-yank==2.0") for tool in ("pip", "uv")] == [None] * 2

    logged = [json.loads(line) for line in deleted.stderr.splitlines() if line.startswith("{")]
    [delete_line] = [line for line in logged if line.get("action") == "delete"]
    assert {key: delete_line[key] for key in ("project", "version", "file", "path")} == {
        "project": "e2e-yank",
        "version": "2.0",
        "file": newer,
        "path": path,
    }
    assert delete_line["purged"] == [base + path, base + path + ".metadata"]


def test_uv_range_reads_count_as_documented(tmp_path: Path) -> None:
    """uv reads a wheel the index gives no PEP 658 metadata for by ranges (a HEAD, then the
    last 16 KiB, which here holds the METADATA member too): a resolution alone is no
    download, an install is one (its whole-file GET after its own metadata read); every byte
    of all of it is in --bytes, and in the edge's own count."""
    primary = f"file://{tmp_path}/primary"
    store = open_store(primary)
    module = "BLOB = " + repr(os.urandom(150_000).hex()) + "\n"  # bigger than uv's tail read
    name, data = build_wheel("e2e-ranged", "1.0", module_source=module)
    assert len(data) > 100_000

    async def publish() -> None:
        record = await upload(store, name, data)
        await store.delete(record.path[1:] + ".metadata")  # as if uploaded before PEP 658
        stripped = dataclasses.replace(record, metadata_sha256=None)
        await store.put(record_key("e2e-ranged", record.filename), stripped.to_json())

    asyncio.run(publish())
    logs = tmp_path / "logs"
    settings = Settings(
        data_dir=tmp_path / "data", files=FilesSettings(primary=primary, logs=f"file://{logs}")
    )
    front = PrefixRouter([("/simple", build_index(settings))], default=build_edge(settings))
    env = _isolated_env(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    requirements = tmp_path / "requirements.in"
    requirements.write_text("e2e-ranged\n")
    with running(front) as url:
        index = ["--index-url", url + "/simple/"]
        compiled = subprocess.run(
            [str(UV), "pip", "compile", *index, str(requirements)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert compiled.returncode == 0, compiled.stderr
        assert "e2e-ranged==1.0" in compiled.stdout
        installed = subprocess.run(
            [str(UV), "pip", "install", "--python", str(venv / "bin/python"), *index, "e2e-ranged"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        edge_bytes = _metric(url, "files_bytes_sent_total")

    lines = _log_lines(logs, "downloads")
    served = [facts.split("|") for facts in lines[::2]]
    assert all(line.startswith("download|") for line in lines[1::2])
    statuses = [(int(f[1]), int(f[2]), int(f[4])) for f in served]  # status, bytes, start
    reads = [s for s in statuses if s[0] == 206]
    whole = [s for s in statuses if s[0] == 200]
    assert whole == [(200, len(data), 0)]  # the install's download
    assert reads == [(206, 16384, len(data) - 16384)] * 2  # uv's tail read, per run: not
    # from byte 0, so not a download
    sent = sum(count for _, count, _ in statuses)
    assert sent == edge_bytes  # what the served lines say is what the edge counted

    warehouse = f"duckdb://{tmp_path}/warehouse.duckdb"
    results = open_store(f"file://{tmp_path}/results")
    asyncio.run(ingest_once(open_store(f"file://{logs}"), results, lease_timeout=60))
    asyncio.run(publish_with(results, warehouse, batch_files=100, uploads=store))
    today = datetime.now(UTC).date().isoformat()
    span = ("--start", today, "--end", today)
    by_status = _stats(warehouse, "e2e-ranged", *span, "--by", "status")
    assert [(row["status"], row["download_count"]) for row in by_status] == [(200, 1)]
    per_day = _stats(warehouse, "e2e-ranged", *span, "--bytes")
    assert [(row["download_count"], row["bytes_sent"]) for row in per_day] == [(1, sent)]
