"""``distribution_metadata`` rows for upload tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from pythonhosted.warehouse.metadata import TIMESTAMP_FORMAT


def upload(name: str, version: str, number: int, summary: str = "other") -> bytes:
    """A ``distribution_metadata`` row (the columns a row must have, and a summary)."""
    when = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=number)
    return orjson.dumps(
        {
            "name": name,
            "version": version,
            "summary": summary,
            "upload_time": when.strftime(TIMESTAMP_FORMAT),
            "filename": f"{name}-{version}-{number}.tar.gz",
            "size": number,
            "path": f"/packages/{number}",
            "python_version": "source",
            "packagetype": "sdist",
            "has_signature": False,
            "md5_digest": "",
            "sha256_digest": "",
            "blake2_256_digest": "",
        }
    )
