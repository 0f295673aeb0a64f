"""Project pages in the two simple-API formats, from catalog records.

HTML follows PEP 503 with the PEP 658/714 metadata attributes; JSON follows PEP 691 with the
PEP 700 additions (api-version 1.1: ``versions``, ``size``, ``upload-time``). Yanked files
(PEP 592) stay listed, marked ``data-yanked="reason"`` / ``"yanked": "reason"`` (``true``
without a reason), so installers skip them unless a requirement pins them with ``==``.
"""

from __future__ import annotations

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


def index_json(projects: list[str]) -> bytes:
    return orjson.dumps(
        {"meta": {"api-version": API_VERSION}, "projects": [{"name": name} for name in projects]}
    )


def index_html(projects: list[str]) -> bytes:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        "    <title>Simple index</title>",
        "  </head>",
        "  <body>",
    ]
    lines += [f'    <a href="/simple/{escape(name)}/">{escape(name)}</a><br>' for name in projects]
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()
