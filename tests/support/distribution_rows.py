"""``distribution_metadata`` rows as uploads make them, without building files."""

from __future__ import annotations

from pythonhosted.catalog import FileRecord
from pythonhosted.warehouse.metadata import metadata_row, row_json

METADATA = (
    b"Metadata-Version: 2.4\nName: demo\nVersion: 1.0\nSummary: It's a demo\n"
    b"Author-email: Jane Doe <jane@example.org>, bob@example.net\nLicense-File: LICENSE\n"
    b"License-File: NOTICE\nClassifier: A :: B\nClassifier: C :: D\nPlatform: linux\n"
    b"Requires-Python: >=3.9\nRequires-Dist: click>=8; extra == 'cli'\nProvides-Extra: cli\n"
    b"Project-URL: Source, https://github.com/demo-org/demo\nDynamic: Classifier\n\n"
    b"Long text \xc3\xa9\n"
)


def distribution_row(number: int, metadata: bytes = METADATA) -> bytes:
    """The ``distribution_metadata`` row an upload of ``demo-{number}.0.tar.gz`` with this
    core metadata makes (uploaded on day ``number + 1`` of January 2026)."""
    filename = f"demo-{number}.0.tar.gz"
    record = FileRecord(
        filename=filename,
        path=f"/packages/aa/bb/{filename}",
        project="demo",
        version=f"{number}.0",
        package_type="sdist",
        python_version="source",
        size=number,
        sha256=f"{number:064d}",
        blake2b_256="1" * 64,
        upload_time=f"2026-01-0{number + 1}T10:11:12.345678Z",
        md5="2" * 32,
        uploaded_via="pythonhosted/1",
    )
    return row_json(metadata_row(record, metadata, "2" * 32))
