"""Project pages in the two simple-API formats, from catalog records.

HTML follows PEP 503 with the PEP 658/714 metadata attributes; JSON follows PEP 691 with the
PEP 700 additions (api-version 1.1: ``versions``, ``size``, ``upload-time``). Yanked files
(PEP 592) stay listed, marked ``data-yanked="reason"`` / ``"yanked": "reason"`` (``true``
without a reason), so installers skip them unless a requirement pins them with ``==``.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import escape

import orjson
from packaging.version import InvalidVersion, Version

from pythonhosted.catalog import FileRecord

API_VERSION = "1.1"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def _sort_key(version: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def project_json(name: str, records: list[FileRecord], files_url: str) -> bytes:
    files = []
    for record in records:
        entry: dict[str, object] = {
            "filename": record.filename,
            "url": files_url + record.path,
            "hashes": {"sha256": record.sha256},
            "requires-python": record.requires_python,
            "size": record.size,
            "upload-time": record.upload_time,
            "yanked": (record.yanked_reason or True) if record.yanked else False,
        }
        if record.metadata_sha256:
            entry["core-metadata"] = {"sha256": record.metadata_sha256}
            entry["dist-info-metadata"] = {"sha256": record.metadata_sha256}
        files.append(entry)
    versions = sorted({record.version for record in records}, key=_sort_key)
    return orjson.dumps(
        {"meta": {"api-version": API_VERSION}, "name": name, "versions": versions, "files": files}
    )


def project_html(name: str, records: list[FileRecord], files_url: str) -> bytes:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f"    <title>Links for {escape(name)}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {escape(name)}</h1>",
    ]
    for record in records:
        attributes = [f'href="{escape(files_url + record.path)}#sha256={record.sha256}"']
        if record.requires_python:
            attributes.append(f'data-requires-python="{escape(record.requires_python)}"')
        if record.metadata_sha256:
            attributes.append(f'data-core-metadata="sha256={record.metadata_sha256}"')
            attributes.append(f'data-dist-info-metadata="sha256={record.metadata_sha256}"')
        if record.yanked:
            attributes.append(f'data-yanked="{escape(record.yanked_reason or "")}"')
        lines.append(f"    <a {' '.join(attributes)}>{escape(record.filename)}</a><br>")
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


# Root-page names rendered at once: the root lists the whole catalog (a million names: a
# 63 MB page), and one ``join`` or ``orjson.dumps`` of it all held the GIL for ~0.1 s, on
# top of the listing's own hold, while every other request of the process waited.
ROOT_BATCH = 16_384


def _batches(projects: list[str]) -> Iterator[list[str]]:
    for at in range(0, len(projects), ROOT_BATCH):
        yield projects[at : at + ROOT_BATCH]


def index_json(projects: list[str]) -> bytes:
    """The same bytes as one ``orjson.dumps`` of the page, made a batch of names at a time."""
    entries = (
        orjson.dumps([{"name": name} for name in batch])[1:-1] for batch in _batches(projects)
    )
    head = orjson.dumps({"meta": {"api-version": API_VERSION}, "projects": []})[:-2]
    return b"".join([head, b",".join(entries), b"]}"])


def index_html(projects: list[str]) -> bytes:
    head = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        "    <title>Simple index</title>",
        "  </head>",
        "  <body>",
        "",
    ]
    parts = ["\n".join(head).encode()]
    for batch in _batches(projects):
        links = [
            f'    <a href="/simple/{escape(name)}/">{escape(name)}</a><br>\n' for name in batch
        ]
        parts.append("".join(links).encode())
    parts.append(b"  </body>\n</html>\n")
    return b"".join(parts)
