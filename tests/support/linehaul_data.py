"""Log objects for ingest/publish tests: the real batches and generated unique events."""

from __future__ import annotations

import asyncio
import gzip
from email.utils import formatdate
from pathlib import Path

from pythonhosted.storage import Store

LOGS = Path("/work/shared/data/linehaul/logs")
REAL = sorted(LOGS.glob("*.log.gz"))
PIP = (
    'pip/24.0 {"installer":{"name":"pip","version":"24.0"},"python":"3.12.1",'
    '"implementation":{"name":"CPython","version":"3.12.1"},"ci":null}'
)
UV = (
    'uv/0.4.30 {"installer":{"name":"uv","version":"0.4.30","subcommand":["pip","install"]},'
    '"python":"3.11.7","ci":true}'
)
START = 1_610_052_894  # Thu, 07 Jan 2021 20:54:54 GMT


def download_line(serial: int, project: str = "demo", agent: str = PIP, when: int = START) -> str:
    """A download event whose url is unique per ``serial`` (so duplicates can be counted)."""
    ts = formatdate(when, usegmt=True)
    name = f"{project.replace('-', '_')}-1.0-py3-none-any.whl"
    return (
        f"download|{ts}|US|/packages/{serial:08d}/{name}|TLSv1.3|TLS_AES_128_GCM_SHA256|"
        f"{project}|1.0|bdist_wheel|{agent}"
    )


def simple_line(serial: int, project: str = "demo", when: int = START) -> str:
    ts = formatdate(when, usegmt=True)
    return f"simple|{ts}|DE|/simple/{project}/?s={serial}|TLSv1.3|X||||{PIP}"


def gz(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode())


def log_key(index: int, kind: str = "downloads") -> str:
    return f"{kind}/2021/01/07/20/55/{kind}-2021-01-07T20-55-00-host-{index}-abc.log.gz"


def seed_unique(store: Store, objects: int, lines: int, first: int = 0) -> int:
    """``objects`` log objects of ``lines`` download events each, every url distinct; from
    object ``first`` on, so later calls add objects and urls of their own."""

    async def put_all() -> None:
        for index in range(first, first + objects):
            serials = range(index * lines, (index + 1) * lines)
            await store.put(log_key(index), gz([download_line(n) for n in serials]))

    asyncio.run(put_all())
    return objects * lines
