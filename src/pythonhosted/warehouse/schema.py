"""The warehouse tables, as data: ``file_downloads``, ``simple_requests`` and
``distribution_metadata``.

This is the one definition of the row shapes. The parser builds download and simple rows
with these fields (tests check every row against it), uploads and the metadata backfill build
``distribution_metadata`` rows (:mod:`.metadata`), and the warehouse back ends turn it into
their table definitions; :func:`bigquery_fields` gives the BigQuery JSON schema form
(``name``/``type``/``mode``/``fields``) that DuckDB and Parquet types can be derived from too.
:data:`TIME_COLUMNS` names each table's time column (partitions, exports).

Field order is the table's column order (PyPI's public dataset). Rows are JSON objects, so the
key order of a row does not matter to any loader.

Modes are the public tables' (``bigquery-public-data.pypi.file_downloads`` and
``simple_requests``): every column is NULLABLE there, ``timestamp``, ``url``, ``project`` and
``file`` included, although linehaul's 2018 schema had those REQUIRED. A load job whose schema
changes a column's mode is refused by BigQuery, so a table we create must take rows into, and
be loadable like, a PyPI-shaped one. What the parser promises is separate: ``in_every_row``
marks the values every row it makes has.

``file_downloads`` ends with a column of ours, ``response`` (the facts of our files edge's
answer; null in rows of reference log lines), NULLABLE as BigQuery requires of a column
added to an existing table: a load job may add it to a PyPI-shaped table (with
``ALLOW_FIELD_ADDITION``), never change one of PyPI's.

``distribution_metadata`` is PyPI's ``bigquery-public-data.pypi.distribution_metadata``: the
columns and modes are those Warehouse (pypi/warehouse) loads it with, as its test fixture of
the table's schema states them (``tests/unit/packaging/test_tasks.py``, ``bq_schema``:
``name``, ``version`` and the file's facts REQUIRED, multi-valued core metadata REPEATED),
in that order; three REPEATED columns of ours follow, core metadata fields PyPI does not
keep (``provides_extra``, ``supported_platform``, ``dynamic``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["STRING", "TIMESTAMP", "BOOLEAN", "INTEGER", "RECORD"]
Mode = Literal["NULLABLE", "REQUIRED", "REPEATED"]


@dataclass(frozen=True, slots=True)
class Field:
    """One column, or one member of a RECORD column."""

    name: str
    type: FieldType
    mode: Mode = "NULLABLE"
    description: str = ""
    fields: tuple[Field, ...] = ()
    in_every_row: bool = False  # the parser never leaves it null (the table would allow it)

    def bigquery(self) -> dict[str, object]:
        """This field in BigQuery's JSON schema form."""
        out: dict[str, object] = {"name": self.name, "type": self.type, "mode": self.mode}
        if self.description:
            out["description"] = self.description
        if self.fields:
            out["fields"] = bigquery_fields(self.fields)
        return out


def _strings(*names: str, mode: Mode = "NULLABLE") -> tuple[Field, ...]:
    return tuple(Field(name, "STRING", mode) for name in names)


DETAILS = Field(
    "details",
    "RECORD",
    description="What the user agent says about the client; null when it is not recognised.",
    fields=(
        Field(
            "installer",
            "RECORD",
            fields=(
                *_strings("name", "version"),
                Field(
                    "subcommand",
                    "STRING",
                    description="The installer's command line (a list in the user agent), "
                    "shell-quoted with shlex.join.",
                ),
            ),
        ),
        Field("python", "STRING"),
        Field("implementation", "RECORD", fields=_strings("name", "version")),
        Field(
            "distro",
            "RECORD",
            fields=(
                *_strings("name", "version", "id"),
                Field("libc", "RECORD", fields=_strings("lib", "version")),
            ),
        ),
        Field("system", "RECORD", fields=_strings("name", "release")),
        *_strings("cpu", "openssl_version", "setuptools_version", "rustc_version"),
        Field("ci", "BOOLEAN", description="True when the installer detected a CI system."),
    ),
)

FILE = Field(
    "file",
    "RECORD",
    fields=(
        Field("filename", "STRING", description="Last path segment of the url.", in_every_row=True),
        Field("project", "STRING", in_every_row=True),
        Field("version", "STRING", in_every_row=True),
        Field("type", "STRING", description="sdist, bdist_wheel, ...", in_every_row=True),
    ),
    in_every_row=True,
)

_TIMESTAMP = Field(
    "timestamp",
    "TIMESTAMP",
    description="UTC, written YYYY-MM-DD HH:MM:SS +00:00.",
    in_every_row=True,
)
_COUNTRY = Field("country_code", "STRING", description="ISO 3166 code of the client, if known.")
_URL = Field(
    "url",
    "STRING",
    description="The request path as logged (not percent-decoded).",
    in_every_row=True,
)
_PROJECT = Field("project", "STRING", in_every_row=True)
_TLS = _strings("tls_protocol", "tls_cipher")

RESPONSE = Field(
    "response",
    "RECORD",
    description="How our files edge answered (its served log line); null for lines in the "
    "reference's format, which do not say.",
    fields=(
        Field("status", "INTEGER", description="200 (the whole file) or 206 (a range)."),
        Field("bytes_sent", "INTEGER", description="Body bytes that went out."),
        Field("range_requested", "BOOLEAN", description="The request had a Range header."),
        Field("range_start", "INTEGER", description="Offset of the first byte sent (0: 200)."),
    ),
)

FILE_DOWNLOADS: tuple[Field, ...] = (
    _TIMESTAMP,
    _COUNTRY,
    _URL,
    _PROJECT,
    FILE,
    DETAILS,
    *_TLS,
    RESPONSE,
)
SIMPLE_REQUESTS: tuple[Field, ...] = (_TIMESTAMP, _COUNTRY, _URL, _PROJECT, DETAILS, *_TLS)

DISTRIBUTION_METADATA: tuple[Field, ...] = (
    Field("metadata_version", "STRING"),
    *_strings("name", "version", mode="REQUIRED"),
    *_strings("summary"),
    Field(
        "description",
        "STRING",
        description="The long description, cut to its first 40,000 bytes (as PyPI cuts it).",
    ),
    *_strings(
        "description_content_type",
        "author",
        "author_email",
        "maintainer",
        "maintainer_email",
        "license",
        "license_expression",
    ),
    *_strings("license_files", mode="REPEATED"),
    Field("keywords", "STRING", description="The keywords, joined with ', '."),
    *_strings("classifiers", "platform", mode="REPEATED"),
    *_strings("home_page", "download_url", "requires_python"),
    *_strings(
        "requires",
        "provides",
        "obsoletes",
        "requires_dist",
        "provides_dist",
        "obsoletes_dist",
        "requires_external",
        mode="REPEATED",
    ),
    Field("project_urls", "STRING", "REPEATED", description="'Label, URL' per project URL."),
    Field("uploaded_via", "STRING", description="The uploading tool, as it named itself."),
    Field("upload_time", "TIMESTAMP", "REQUIRED"),
    *_strings("filename", mode="REQUIRED"),
    Field("size", "INTEGER", "REQUIRED"),
    Field("path", "STRING", "REQUIRED", description="Its key under /packages/, as PyPI's."),
    *_strings("python_version", "packagetype", mode="REQUIRED"),
    Field("comment_text", "STRING"),
    Field("has_signature", "BOOLEAN", "REQUIRED"),
    *_strings("md5_digest", "sha256_digest", "blake2_256_digest", mode="REQUIRED"),
    *_strings("provides_extra", "supported_platform", "dynamic", mode="REPEATED"),
)

TABLES: dict[str, tuple[Field, ...]] = {
    "file_downloads": FILE_DOWNLOADS,
    "simple_requests": SIMPLE_REQUESTS,
    "distribution_metadata": DISTRIBUTION_METADATA,
}
EVENT_TABLES = ("file_downloads", "simple_requests")
"""The tables linehaul loads from result files (one row per logged event)."""
TIME_COLUMNS: dict[str, str] = {
    "file_downloads": "timestamp",
    "simple_requests": "timestamp",
    "distribution_metadata": "upload_time",
}
"""Each table's time column: BigQuery partitions by its day, Parquet exports by its date."""
UNIQUE_KEYS: dict[str, str] = {"distribution_metadata": "filename"}
"""A column no two rows share (a filename is unique forever on PyPI): rows come once per
value, and a back end that can enforce it does."""


def bigquery_fields(fields: tuple[Field, ...]) -> list[dict[str, object]]:
    """A table (or a RECORD's members) in BigQuery's JSON schema form."""
    return [field.bigquery() for field in fields]
