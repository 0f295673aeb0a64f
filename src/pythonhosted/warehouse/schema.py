"""The two analytics tables, as data: ``file_downloads`` and ``simple_requests``.

This is the one definition of the row shape. The parser builds rows with exactly these
fields (tests check every row against it), and the warehouse back ends turn it into their
table definitions; :func:`bigquery_fields` gives the BigQuery JSON schema form
(``name``/``type``/``mode``/``fields``) that DuckDB and Parquet types can be derived from too.

Field order is the table's column order (PyPI's public dataset). Rows are JSON objects, so the
key order of a row does not matter to any loader.

Modes are the public tables' (``bigquery-public-data.pypi.file_downloads`` and
``simple_requests``): every column is NULLABLE there, ``timestamp``, ``url``, ``project`` and
``file`` included, although linehaul's 2018 schema had those REQUIRED. A load job whose schema
changes a column's mode is refused by BigQuery, so a table we create must take rows into, and
be loadable like, a PyPI-shaped one. What the parser promises is separate: ``in_every_row``
marks the values every row it makes has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["STRING", "TIMESTAMP", "BOOLEAN", "RECORD"]
Mode = Literal["NULLABLE", "REQUIRED"]


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


def _strings(*names: str) -> tuple[Field, ...]:
    return tuple(Field(name, "STRING") for name in names)


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

FILE_DOWNLOADS: tuple[Field, ...] = (_TIMESTAMP, _COUNTRY, _URL, _PROJECT, FILE, DETAILS, *_TLS)
SIMPLE_REQUESTS: tuple[Field, ...] = (_TIMESTAMP, _COUNTRY, _URL, _PROJECT, DETAILS, *_TLS)

TABLES: dict[str, tuple[Field, ...]] = {
    "file_downloads": FILE_DOWNLOADS,
    "simple_requests": SIMPLE_REQUESTS,
}


def bigquery_fields(fields: tuple[Field, ...]) -> list[dict[str, object]]:
    """A table (or a RECORD's members) in BigQuery's JSON schema form."""
    return [field.bigquery() for field in fields]
