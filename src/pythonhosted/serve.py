"""``pythonhosted serve``: the whole system in one process with embedded defaults.

Everything lives under the data dir (``./var`` by default): local primary, archive and log
stores, the spool. On first start it uploads a couple of sample distributions it builds itself,
so there is something to fetch right away, and every start prints URLs to try.
"""

from __future__ import annotations

import asyncio

import click

from pythonhosted.catalog import FileRecord, project_records
from pythonhosted.config import Settings
from pythonhosted.files.service import build_edge
from pythonhosted.files.upload import upload
from pythonhosted.index.service import build_index
from pythonhosted.samples import build_sdist, build_wheel
from pythonhosted.storage import open_store
from pythonhosted.web.router import PrefixRouter
from pythonhosted.web.server import Bind, run

SAMPLE_PROJECT = "hello-pythonhosted"


def embedded_defaults(settings: Settings) -> Settings:
    """Fill every store URL the user left empty with a directory under the data dir."""
    data = settings.data_dir.absolute()
    files = settings.files
    updates = {
        "primary": files.primary or f"file://{data}/files",
        "archive": files.archive or f"file://{data}/archive",
        "logs": files.logs or f"file://{data}/logs",
    }
    return settings.model_copy(update={"data_dir": data, "files": files.model_copy(update=updates)})


async def ensure_samples(primary_url: str) -> list[FileRecord]:
    """The sample project's files, uploaded first if the store does not have them yet."""
    store = open_store(primary_url)
    records = await project_records(store, SAMPLE_PROJECT)
    if not records:
        for name, data in (
            build_wheel(SAMPLE_PROJECT, "1.0.0"),
            build_sdist(SAMPLE_PROJECT, "1.0.0"),
        ):
            records.append(await upload(store, name, data))
    return records


def serve(settings: Settings) -> None:
    settings = embedded_defaults(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    files_bind = Bind.parse(settings.files.bind)
    samples = asyncio.run(ensure_samples(settings.files.primary))
    front = PrefixRouter([("/simple", build_index(settings))], default=build_edge(settings))
    base = files_bind.url()
    lines = [
        f"pythonhosted serving from {settings.data_dir}",
        f"  files edge  {base}  (health: {base}/_health, metrics: {base}/metrics)",
        f"  index       {base}/simple/   (pip install --index-url {base}/simple/ {SAMPLE_PROJECT})",
        "  try:",
    ]
    lines += [f"    curl -sSI {base}{record.path}" for record in samples]
    lines.append(f"    curl -sS -H 'Range: bytes=-64' {base}{samples[0].path} | xxd | tail -2")
    click.echo("\n".join(lines))
    run([(front, files_bind)])
