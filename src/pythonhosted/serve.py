"""``pythonhosted serve``: the whole system in one process with embedded defaults.

Everything lives under the data dir (``./var`` by default): local primary, archive and log
stores, the spool. On first start it uploads a couple of sample distributions it builds itself,
so there is something to fetch right away, and every start prints URLs to try.
"""

from __future__ import annotations

import asyncio

import click

from pythonhosted.camo import create_app as create_camo
from pythonhosted.catalog import FileRecord, project_records
from pythonhosted.config import CamoSettings, Settings
from pythonhosted.conveyor.samples import ensure_sample_docs
from pythonhosted.conveyor.service import build_app as build_conveyor
from pythonhosted.conveyor.service import docs_url
from pythonhosted.files.service import build_edge
from pythonhosted.files.upload import upload
from pythonhosted.index.service import build_app as build_index
from pythonhosted.linehaul.service import build_app as build_linehaul
from pythonhosted.localdirs import ensure_writable, load_or_create_secret
from pythonhosted.pipeline import warehouse_url
from pythonhosted.samples import build_sdist, build_wheel
from pythonhosted.stats_web.service import build_app as build_stats_web
from pythonhosted.storage import open_store
from pythonhosted.web.router import PrefixRouter
from pythonhosted.web.server import Bind, ServerLimits, run
from pythonhosted.web.streams import share_out
from pythonhosted.web.types import ASGIApp

# One process, one open-file limit, shared by weight between its servers: most
# for the files edge (also the index), the public face; camo's connections each hold an
# upstream one too; linehaul's server only answers health checks and scrapes.
DESCRIPTOR_WEIGHTS = {"files": 12, "conveyor": 2, "camo": 3, "linehaul": 1, "stats_web": 2}
# The services whose requests hold stream slots (pythonhosted.web.streams), shared by the same
# weights: slow images cannot take the slots downloads need.
STREAMING = ("files", "conveyor", "camo")

SAMPLE_PROJECT = "hello-pythonhosted"
CAMO_KEY_FILE = "camo.key"
CAMO_CACHE_DIR = "camo-cache"


# Short cycles so a download shows in `pythonhosted stats` within a minute; production keeps
# the CDN's 120 s batches and the reference's 15 min publish schedule.
EMBEDDED_CYCLES = {"log_period": 10.0, "ingest_interval": 10.0, "publish_interval": 15.0}


def embedded_defaults(settings: Settings) -> Settings:
    """Fill every store URL the user left empty with a directory under the data dir, and use
    short batch/ingest/publish cycles unless they were configured."""
    data = settings.data_dir.absolute()
    files = settings.files
    file_updates: dict[str, object] = {
        "primary": files.primary or f"file://{data}/files",
        "archive": files.archive or f"file://{data}/archive",
        "logs": files.logs or f"file://{data}/logs",
    }
    if "log_period" not in files.model_fields_set:
        file_updates["log_period"] = EMBEDDED_CYCLES["log_period"]
    linehaul = settings.linehaul
    linehaul_updates = {
        name: EMBEDDED_CYCLES[name]
        for name in ("ingest_interval", "publish_interval")
        if name not in linehaul.model_fields_set
    }
    return settings.model_copy(
        update={
            "data_dir": data,
            "files": files.model_copy(update=file_updates),
            "linehaul": linehaul.model_copy(update=linehaul_updates),
        }
    )


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


def camo_settings(settings: Settings) -> CamoSettings:
    """Camo's settings, with a key generated once under the data dir when none is configured,
    and its cache on under the data dir (bounded by ``camo.cache_max_bytes``; 0 turns it off)
    unless a cache dir is configured."""
    camo = settings.camo
    if camo.cache_dir is None:
        camo = camo.model_copy(update={"cache_dir": settings.data_dir / CAMO_CACHE_DIR})
    if camo.key is not None or camo.key_file is not None:
        return camo
    key_file = settings.data_dir / CAMO_KEY_FILE
    load_or_create_secret(key_file)
    return camo.model_copy(update={"key_file": key_file})


def serve(settings: Settings) -> None:
    settings = embedded_defaults(settings)
    ensure_writable(settings.data_dir, "data_dir")
    files_bind = Bind.parse(settings.files.bind)
    samples = asyncio.run(ensure_samples(settings.files.primary))
    docs_bind = Bind.parse(settings.conveyor.bind)
    camo_bind = Bind.parse(settings.camo.bind)
    linehaul_bind = Bind.parse(settings.linehaul.bind)
    stats_bind = Bind.parse(settings.stats_web.bind)
    camo = create_camo(camo_settings(settings), access_log=settings.http.access_log)
    asyncio.run(ensure_sample_docs(open_store(docs_url(settings))))
    conveyor = build_conveyor(settings)
    edge = build_edge(settings, legacy=conveyor.legacy)  # one resolver and cache for both
    index = build_index(settings)
    # One address, one scrape: the index's series are answered on the edge's /metrics, where
    # they were counted and never exported before.
    edge.registry.register(index.registry)
    front = PrefixRouter([("/simple", index)], default=edge)
    base = files_bind.url()
    lines = [
        f"pythonhosted serving from {settings.data_dir}",
        f"  files edge  {base}  (health: {base}/_health, metrics: {base}/metrics)",
        f"  index       {base}/simple/   (pip install --index-url {base}/simple/ {SAMPLE_PROJECT})",
        f"  docs        {docs_bind.url()}/{SAMPLE_PROJECT}/   (pythonhosted.org)",
        f"  camo        {camo_bind.url()}   (URLs from: pythonhosted camo sign "
        f"--key-file {settings.data_dir / CAMO_KEY_FILE} --base {camo_bind.url()} URL)",
        f"  analytics   ingest every {settings.linehaul.ingest_interval:g}s, publish every "
        f"{settings.linehaul.publish_interval:g}s into {warehouse_url(settings)}",
        f"              (health: {linehaul_bind.url()}/_health, "
        f"metrics: {linehaul_bind.url()}/metrics)",
        f"              pythonhosted stats {SAMPLE_PROJECT} --by installer",
        f"  stats web   {stats_bind.url()}/   (API: {stats_bind.url()}/api/packages/"
        f"{SAMPLE_PROJECT}/recent, badge: {stats_bind.url()}/badge/{SAMPLE_PROJECT}.svg)",
        "  try:",
    ]
    lines += [f"    curl -sSI {base}{record.path}" for record in samples]
    lines.append(f"    curl -sS -H 'Range: bytes=-64' {base}{samples[0].path} | xxd | tail -2")
    servers: dict[str, tuple[ASGIApp, Bind]] = {
        "files": (front, files_bind),
        "conveyor": (conveyor, docs_bind),
        "camo": (camo, camo_bind),
        "linehaul": (build_linehaul(settings), linehaul_bind),
        "stats_web": (build_stats_web(settings), stats_bind),
    }
    share_out({name: DESCRIPTOR_WEIGHTS[name] for name in STREAMING})
    # Every address on our own server: in one process the smaller servers hold a few thousand
    # connections each (CONNECTION_FLOOR), and past that granian held a new client until the
    # head deadline freed a slot (3,000 silent clients at the docs address: a health check
    # answered after 7.9 s), where ours closes the connections idle longest to make room.
    run(
        list(servers.values()),
        ServerLimits.of(settings.http),
        lambda: click.echo("\n".join(lines)),
        [DESCRIPTOR_WEIGHTS[name] for name in servers],
        ours=True,
    )
