"""The warehouse's tables in ClickHouse, made from :mod:`pythonhosted.warehouse.schema`.

Column types mirror the BigQuery schema: STRING -> ``Nullable(String)``, TIMESTAMP ->
``Nullable(DateTime64(6, 'UTC'))`` (microseconds, as BigQuery's), BOOLEAN ->
``Nullable(Bool)``, INTEGER -> ``Nullable(Int64)``, FLOAT -> ``Nullable(Float64)``, DATE ->
``Nullable(Date32)``, RECORD -> a named ``Tuple`` of its members, REPEATED -> ``Array``. A
table or column added to the schema reaches ClickHouse the same way: tables are created from
it, a column the table lacks is added and a RECORD that gained members is modified
(``ALTER TABLE ... ADD COLUMN`` / ``MODIFY COLUMN``).

Strings are plain, compressed with ``ZSTD(1)``, not ``LowCardinality`` as clickpy stores its
few-valued columns: parsing linehaul's JSON into ``LowCardinality`` members of tuples cost
2.4 times the CPU of plain strings (2.84 against 1.17 CPU s for 180k rows, the whole insert
with the rollups' view), and ZSTD keeps the stored size within a sixth of it (7.8 against
6.8 MiB); a project's row query took 4.2 against 3.4 ms (BENCHMARKS.md).

One difference from BigQuery and DuckDB: ClickHouse has no nullable tuple in its stable
types, so a null RECORD is stored as a record of nulls (``details: null`` reads back as
``details.installer.name`` null, as it would anyway). Nothing we query tells the two apart.

Row tables are ``MergeTree`` ordered by ``(project, timestamp)``, as clickpy orders its
``pypi`` table: a project's rows sit together, so the queries of one project read few
granules. A table with a unique key (:data:`~pythonhosted.warehouse.schema.UNIQUE_KEYS`:
``distribution_metadata``'s ``filename``) is a ``ReplacingMergeTree`` ordered by it, so a row
that went in twice (two publishers adding the same upload at once) is one after merges, and
readers ask with ``FINAL``. Every table keeps the last :data:`DEDUPLICATION_WINDOW` insert
tokens (see :mod:`.load` for why). Modes are not kept: a REQUIRED column is ``Nullable`` as
well, so a table made before a column's mode was known never needs a type change.

The rollups are clickpy's design: a ``SummingMergeTree`` target fed by a materialized view
(``download_rollups_mv``) on every insert into ``file_downloads``. ClickHouse runs the view
on each inserted block and sums rows of one key in the background; readers sum again, so
they never depend on when merges happen. Only downloads go into them: rows that sent the
file's first byte (:data:`COUNTED`, as :data:`pythonhosted.warehouse.rollups.COUNTED`).
``project_names`` is a ``ReplacingMergeTree`` fed the same way. The view's query is
:func:`rollup_select`, which ``rebuild`` also runs over all rows.
"""

from __future__ import annotations

import re

from pythonhosted.warehouse.mirrors import MIRRORS
from pythonhosted.warehouse.rollups import DIMENSIONS
from pythonhosted.warehouse.schema import EVENT_TABLES, TABLES, UNIQUE_KEYS, Field

LOADED = "linehaul_loaded_files"
ROLLUPS = "download_rollups"
ROLLUPS_VIEW = "download_rollups_mv"
ROLLUPS_SOURCE = "file_downloads"  # the table whose inserts feed the views
PROJECTS = "project_names"
PROJECTS_VIEW = "project_names_mv"
DEFINITIONS = "warehouse_definition"
DEDUPLICATION_WINDOW = 10_000
CODEC = "CODEC(ZSTD(1))"
_SCALARS = {
    "STRING": "String",
    "TIMESTAMP": "DateTime64(6, 'UTC')",
    "BOOLEAN": "Bool",
    "BOOL": "Bool",
    "INTEGER": "Int64",
    "INT64": "Int64",
    "FLOAT": "Float64",
    "FLOAT64": "Float64",
    "DATE": "Date32",
}
# PEP 503 names and Python major.minor, in ClickHouse's functions.
NORMALIZED = "lower(replaceRegexpAll(project, '[-_.]+', '-'))"
PYTHON_MINOR = "nullIf(extract(details.python, '^[0-9]+\\\\.[0-9]+'), '')"
_MIRRORS = ", ".join("'" + name.replace("'", "\\'") + "'" for name in MIRRORS)
MIRROR = f"ifNull(details.installer.name IN ({_MIRRORS}), false)"
# The rollup dimensions of :mod:`pythonhosted.warehouse.rollups`, in ClickHouse's dialect.
DIMENSION_SQL: dict[str, str] = {
    "version": "file.version",
    "installer": "details.installer.name",
    "python": PYTHON_MINOR,
    "system": "details.system.name",
    "country": "country_code",
}
assert set(DIMENSION_SQL) == set(DIMENSIONS)
# A download: the response sent the file's first byte (reference rows have no response).
COUNTED = "ifNull(response.range_start, 0) = 0"
# Which insert put a row in an event table: its token, without a mending insert's suffix
# (see :mod:`.load`). MATERIALIZED: computed at the insert, never given, not in ``SELECT *``.
FILE_TOKEN = "_file_token"
ROWS_ONLY = "/rows/"
"""The token suffix of an insert that mends missing rows: the views skip it."""
_INSERT_TOKEN = "getSetting('insert_deduplication_token')"
_NOT_ROWS_ONLY = f"position({_INSERT_TOKEN}, '{ROWS_ONLY}') = 0"
FILE_TOKEN_COLUMN = (
    f"{FILE_TOKEN} String MATERIALIZED splitByString('{ROWS_ONLY}', {_INSERT_TOKEN})[1] {CODEC}"
)
FILE_TOKEN_INDEX = f"{FILE_TOKEN}_index {FILE_TOKEN} TYPE bloom_filter GRANULARITY 1"
MARKER = "~insert"
"""The rollups' dimension of a marker row: ``value`` an insert's token, ``downloads`` its
rows, in the part of that insert's rollups (see :mod:`.load`). Readers ask for named
dimensions (or ``''``), so they never see it."""
DEFINITION = (
    f"clickhouse 3;dimensions={','.join(DIMENSION_SQL)};mirrors={','.join(MIRRORS)};"
    f"counted={COUNTED}"
)


def quote(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def column_type(field: Field, path: str = "") -> str:
    """A schema field's ClickHouse type (see the module doc)."""
    dotted = path + field.name
    repeated = str(field.mode) == "REPEATED"  # BigQuery's third mode, should the schema use it
    if field.type == "RECORD":
        members = ", ".join(f"{quote(f.name)} {column_type(f, dotted + '.')}" for f in field.fields)
        kind = f"Tuple({members})"
        return f"Array({kind})" if repeated else kind
    try:
        scalar = _SCALARS[field.type]
    except KeyError:
        raise ValueError(f"no ClickHouse type for {dotted} ({field.type})") from None
    if repeated:
        return f"Array({scalar})"
    return f"Nullable({scalar})"


def columns_sql(table: str, *, codecs: bool = False) -> str:
    """The table's columns (with the stored tables' codec: see the module doc)."""
    codec = f" {CODEC}" if codecs else ""
    return ", ".join(f"{quote(f.name)} {column_type(f)}{codec}" for f in TABLES[table])


def create_table_sql(table: str) -> str:
    names = {field.name for field in TABLES[table]}
    if table in UNIQUE_KEYS:
        engine, order = "ReplacingMergeTree", [UNIQUE_KEYS[table]]
    else:
        engine, order = "MergeTree", [name for name in ("project", "timestamp") if name in names]
    tokens = f", {FILE_TOKEN_COLUMN}, INDEX {FILE_TOKEN_INDEX}" if table in EVENT_TABLES else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(table)} ({columns_sql(table, codecs=True)}{tokens}) "
        f"ENGINE = {engine} "
        f"ORDER BY ({', '.join(map(quote, order))}) "
        f"SETTINGS allow_nullable_key = 1, "
        f"non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
    )


def _same_type(one: str, other: str) -> bool:
    """Type names equal but for quoting and layout (ClickHouse prints them either way)."""
    return re.sub(r"[\s`]", "", one) == re.sub(r"[\s`]", "", other)


def alter_columns_sql(table: str, existing: dict[str, str]) -> list[str]:
    """Statements that bring a table made by an older release (``existing``: its columns'
    types) to the schema: columns added, and columns whose type changed (a RECORD that
    gained a member) modified."""
    statements = []
    if table in EVENT_TABLES:
        statements += [
            f"ALTER TABLE {quote(table)} ADD COLUMN IF NOT EXISTS {FILE_TOKEN_COLUMN}",
            f"ALTER TABLE {quote(table)} ADD INDEX IF NOT EXISTS {FILE_TOKEN_INDEX}",
        ]
    for f in TABLES[table]:
        wanted = column_type(f)
        if f.name not in existing:
            statements.append(
                f"ALTER TABLE {quote(table)} ADD COLUMN {quote(f.name)} {wanted} {CODEC}"
            )
        elif not _same_type(existing[f.name], wanted):
            statements.append(
                f"ALTER TABLE {quote(table)} MODIFY COLUMN {quote(f.name)} {wanted} {CODEC}"
            )
    return statements


def rollup_select(source: str = ROLLUPS_SOURCE) -> str:
    """The rollup rows of ``source``'s downloads: per day, project, mirror and CI flag, the
    total (dimension ``''``) and the count per value of each dimension, in one scan."""
    pairs = ", ".join(
        ["('', CAST(NULL AS Nullable(String)))"]
        + [f"('{name}', CAST({sql} AS Nullable(String)))" for name, sql in DIMENSION_SQL.items()]
    )
    return (
        "SELECT day, normalized AS project, pair.1 AS dimension, pair.2 AS value, mirror, ci, "
        "toInt64(count()) AS downloads FROM ("
        f"SELECT toDate(timestamp) AS day, {NORMALIZED} AS normalized, {MIRROR} AS mirror, "
        f"details.ci AS ci, arrayJoin([{pairs}]) AS pair FROM {source} WHERE {COUNTED}"
        ") GROUP BY day, normalized, dimension, value, mirror, ci"
    )


def marker_select(token: str, source: str = ROLLUPS_SOURCE) -> str:
    """The :data:`MARKER` row of the rows of ``source`` (``token``: SQL for the value)."""
    return (
        f"SELECT toDate(0) AS day, '' AS project, '{MARKER}' AS dimension, "
        f"CAST({token} AS Nullable(String)) AS value, false AS mirror, "
        f"CAST(NULL AS Nullable(Bool)) AS ci, toInt64(count()) AS downloads FROM {source}"
    )


def markers_select(source: str = ROLLUPS_SOURCE) -> str:
    """The markers of every insert whose rows ``source`` holds (a rebuild's)."""
    return (
        f"SELECT toDate(0), '', '{MARKER}', {FILE_TOKEN}, false, NULL, toInt64(count()) "
        f"FROM {source} WHERE {FILE_TOKEN} != '' GROUP BY {FILE_TOKEN}"
    )


def projects_select(source: str = ROLLUPS_SOURCE) -> str:
    return f"SELECT DISTINCT project AS name, {NORMALIZED} AS normalized FROM {source}"


BOOKKEEPING = (
    f"CREATE TABLE IF NOT EXISTS {LOADED} (name String, table_name LowCardinality(String), "
    "rows UInt64, loaded_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY name"
)
ROLLUPS_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {ROLLUPS} (day Date, project String, "
    "dimension LowCardinality(String), value Nullable(String), mirror Bool, ci Nullable(Bool), "
    "downloads Int64) ENGINE = SummingMergeTree(downloads) "
    "ORDER BY (project, dimension, day, value, mirror, ci) "
    f"SETTINGS allow_nullable_key = 1, non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
)
PROJECTS_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {PROJECTS} (name String, normalized String) "
    "ENGINE = ReplacingMergeTree ORDER BY (normalized, name) "
    f"SETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
)
DEFINITIONS_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {DEFINITIONS} (definition String, made_at DateTime64(3, 'UTC')) "
    "ENGINE = MergeTree ORDER BY made_at"
)


def views_sql() -> list[str]:
    """The views: an insert's rollups with its marker (one block, so one part), and its
    projects' names; a mending insert of rows alone (:data:`ROWS_ONLY`) feeds neither."""
    rollups = f"{rollup_select()} UNION ALL {marker_select(_INSERT_TOKEN)}"
    return [
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {ROLLUPS_VIEW} TO {ROLLUPS} "
        f"AS SELECT * FROM ({rollups}) WHERE {_NOT_ROWS_ONLY}",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {PROJECTS_VIEW} TO {PROJECTS} "
        f"AS SELECT * FROM ({projects_select()}) WHERE {_NOT_ROWS_ONLY}",
    ]
