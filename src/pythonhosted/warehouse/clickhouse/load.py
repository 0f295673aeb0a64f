"""The ClickHouse warehouse: ``clickhouse://[user@]host:port/database`` or ``chdb://PATH``.

**Exactly once, by insert tokens.** ClickHouse has no transaction that spans an insert into
``file_downloads`` and one into a bookkeeping table (its transactions are experimental and
need Keeper), so the bookkeeping of DuckDB's back end cannot commit with the rows. What
ClickHouse has instead is made for this: an insert carrying an ``insert_deduplication_token``
is dropped when a block with that token was inserted before (``MergeTree`` keeps the last
:data:`~.tables.DEDUPLICATION_WINDOW` tokens per table; replicated and cloud tables keep
them in Keeper). So each result file is one ``INSERT`` whose token is derived from the table
and the file name, and:

- the file's rows become **one block**, so one part, which is committed whole or not at all
  (``min_insert_block_size_rows``/``_bytes`` set far above a result file's size, which
  ingest caps at about 64 MiB; otherwise ClickHouse would cut the file into blocks whose
  boundaries need not repeat on a retry);
- the materialized views (the rollups) dedupe their own blocks by tokens derived from the
  file's (``deduplicate_blocks_in_dependent_materialized_views``): a crash after the rows'
  part but before the rollups' part is mended by the retry, which the rows' table drops and
  the views take;
- after the insert the name goes into ``linehaul_loaded_files`` (name, table, rows, time), so
  later passes skip the file without inserting it at all (that table keeps every name, the
  tokens only a window); a crash between insert and bookkeeping leaves a file whose retry
  inserts a duplicate token, which is dropped, and then books it.

Why not bookkeeping alone, as in DuckDB: without a shared transaction the bookkeeping cannot
tell a file loaded just before a crash from one never loaded. The price of tokens: a file
retried after more than the window's inserts would load again (publish retries on its next
pass; the window is thousands of files).

**Tokens alone are not enough on a single-node ``MergeTree``, so every insert is checked.**
ClickHouse writes a block's token to the table's deduplication log *before* it renames the
block's part into place (replicated tables commit both in one Keeper transaction); a kill
between the two leaves a token without rows, and the retry carrying that token is dropped
as a duplicate. ``bench/probe_chdb_kills.py`` kills chDB loads at random moments; the rows
of a file were lost that way (BENCHMARKS.md), while the views, which had not run before
the kill, took the retry's rollups. The same window exists before each view's part. So
what an insert left is asked, not assumed:

- every row of an event table carries the token of the insert that wrote it
  (``_file_token``, a ``MATERIALIZED`` column, so never sent and not in ``SELECT *``; a
  bloom filter index finds a token's rows without reading the table);
- the rollups' view writes, in the same block as an insert's rollups (so the same part), a
  marker row: dimension ``~insert``, the token, the insert's rows (:data:`~.tables.MARKER`);
- after its inserts, a load asks which of its tokens have markers (a lookup in the rollups'
  sort key), and whether the table gained the rows it sent (its ``total_rows``, read before
  and after: a merge keeps it); only if not, which of its tokens have rows (the bloom filter
  still reads about half of the index of merged parts: 55 ms CPU at 2M rows, against 4 ms
  for ``total_rows``, BENCHMARKS.md). Rows missing (the window above): the file goes in
  again under the token plus ``/rows/`` and a random suffix, which ``_file_token`` strips
  and the views skip (they took the retry's rollups already). A marker missing: the file's
  rollups and project names are computed from its rows (``_file_token``) in one insert with
  the marker, without a token. A kill during either is found the same way by the next
  attempt. Only then is the file booked. A gap that stays after mending is an error: the
  file is not booked and stays in the results store.

What the checks do not cover: a dropped insert while another writer added exactly as many
rows to the same table (``total_rows`` would then look right); two publishers loading the
same file at the same moment on a ClickHouse server, where one's check could run between the
other's token and its part and insert rows that were about to appear (a window of the same
size as the one closed, which needs two publishers on one file); and a file an older release
inserted but did not book (its rollups have no marker, so they are computed again).

Rows count per file for the bookkeeping: the file's lines (the insert is all or nothing).

**Parquet files** (``linehaul import``) of more than :data:`PARQUET_PART_ROWS` rows go in as
several inserts, one per part of at most that many rows, each with a token of its own (the
file's name and the part's number), and the file is booked once after the last: one block
holds its rows in memory, and a 6.7M-row day exported whole took 6.2 GB to import. DuckDB
cuts the parts, on one thread so that a retry cuts the same rows into the same parts, whose
tokens then drop the ones already in.

**distribution_metadata**, a row per uploaded file (``add_distributions``): the filenames the
table holds are asked first and left out, the rest go in as one insert (one block, so all or
none) **without** a token, then the batch is booked in ``linehaul_loaded_files`` under
``distribution_metadata/`` and a name derived from its filenames (which moves the stats web's
data version). A publish killed after the insert finds the filenames there on its retry and
adds nothing. No token, because the window above is real: CI once killed a publish after
ClickHouse had logged a batch's token and before its part was in place, and the retry's insert
of the same 50 rows was dropped as a duplicate while their queue objects were deleted. The
table needs none: it is a ``ReplacingMergeTree`` keyed by filename (:mod:`.tables`), so two
publishers adding the same batch at once end as one row per file, which readers see at once by
reading with ``FINAL``. (``insert_deduplicate`` is off for it: without a token ClickHouse would
deduplicate by the block's checksum, which a retry of the same rows repeats.)
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import orjson

from pythonhosted.warehouse.base import LoadResult, LocalFile, WarehouseError
from pythonhosted.warehouse.clickhouse import tables
from pythonhosted.warehouse.clickhouse.engines import Engine, open_engine, settings_sql
from pythonhosted.warehouse.clickhouse.tables import DEFINITION, DEFINITIONS, LOADED, quote
from pythonhosted.warehouse.schema import EVENT_TABLES, TABLES

log = logging.getLogger(__name__)
DISTRIBUTIONS = "distribution_metadata"

# Far above a result file (ingest writes parts of about 64 MiB): one block, one part.
_ONE_BLOCK = 1 << 40
INSERT_SETTINGS: dict[str, object] = {
    "async_insert": 0,
    "insert_deduplicate": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "min_insert_block_size_rows": _ONE_BLOCK,
    "min_insert_block_size_bytes": _ONE_BLOCK,
    "max_insert_block_size": _ONE_BLOCK,
    "input_format_skip_unknown_fields": 1,
    "input_format_null_as_default": 1,
    "date_time_input_format": "best_effort",
}


def token(table: str, name: str) -> str:
    """The insert token of result file ``name`` in ``table``."""
    return "linehaul-" + hashlib.sha256(f"{table}\0{name}".encode()).hexdigest()[:40]


def insert_sql(
    table: str, name: str | None, fmt: str = "JSONEachRow", *, mend: bool = False
) -> str:
    """``INSERT`` of one result file (columns given: unknown keys are ignored), deduplicated
    by the token of its ``name``; ``mend``: of its rows alone, under a token of its own (see
    the module doc); without a name, not deduplicated at all."""
    columns = ", ".join(quote(field.name) for field in TABLES[table])
    if name is None:
        dedupe: dict[str, object] = {"insert_deduplicate": 0}
    else:
        suffix = tables.ROWS_ONLY + secrets.token_hex(8) if mend else ""
        dedupe = {"insert_deduplication_token": token(table, name) + suffix}
    settings = settings_sql({**INSERT_SETTINGS, **dedupe})
    return f"INSERT INTO {quote(table)} ({columns}) {settings} FORMAT {fmt}"


def ndjson_rows(data: bytes) -> int:
    """NDJSON lines in ``data``, a last line without its newline included."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _parquet_rows(path: Path) -> int:
    """Rows of a Parquet file, from its footer, read by DuckDB, which every install has."""
    with duckdb.connect() as con:
        found = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()
    return int(found[0]) if found else 0


PARQUET_PART_ROWS = 1_000_000
"""The most rows a Parquet file's insert carries (one block, held whole in memory)."""
_ROW_GROUP_ROWS = 125_000


@contextmanager
def _parquet_parts(path: Path, rows: int) -> Iterator[list[Path | bytes]]:
    """``path`` itself, or the files of its parts of at most :data:`PARQUET_PART_ROWS` rows
    (removed afterwards), in order."""
    if rows <= PARQUET_PART_ROWS:
        yield [path]
        return
    folder = path.with_name(path.name + ".parts")
    shutil.rmtree(folder, ignore_errors=True)
    group = min(_ROW_GROUP_ROWS, PARQUET_PART_ROWS)
    try:
        with duckdb.connect() as con:
            con.execute("SET threads = 1")  # the same parts on every retry
            con.execute(
                f"COPY (SELECT * FROM read_parquet(?)) TO '{_literal(folder)}' (FORMAT parquet, "
                f"ROW_GROUP_SIZE {group}, ROW_GROUPS_PER_FILE {PARQUET_PART_ROWS // group})",
                [str(path)],
            )
        parts = sorted(folder.glob("*.parquet"), key=lambda part: int(part.stem.split("_")[-1]))
        yield list[Path | bytes](parts)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _inserts(
    name: str, source: Path | bytes | list[Path | bytes]
) -> list[tuple[str, Path | bytes]]:
    """The inserts of one file: (the name its token derives from, the data)."""
    if isinstance(source, list) and len(source) > 1:
        return [(f"{name}#{number}", part) for number, part in enumerate(source)]
    return [(name, source[0] if isinstance(source, list) else source)]


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")


def prepare(engine: Engine) -> None:
    """Create what is missing: tables (and columns the schema gained), bookkeeping, rollups
    and their views; rebuild the rollups when they were made by another definition."""
    for table in TABLES:
        engine.command(tables.create_table_sql(table))
        existing = engine.rows(
            "SELECT name, type FROM system.columns "
            "WHERE database = currentDatabase() AND table = {table:String}",
            {"table": table},
        )
        for statement in tables.alter_columns_sql(table, dict(existing)):
            engine.command(statement)
    for statement in (
        tables.BOOKKEEPING,
        tables.ROLLUPS_TABLE,
        tables.PROJECTS_TABLE,
        tables.DEFINITIONS_TABLE,
    ):
        engine.command(statement)
    found = engine.rows(f"SELECT definition FROM {DEFINITIONS} ORDER BY made_at DESC LIMIT 1")
    if found and found[0][0] == DEFINITION:
        for statement in tables.views_sql():
            engine.command(statement)
        return
    has_rows = bool(engine.rows("SELECT 1 FROM file_downloads LIMIT 1"))
    if found or has_rows:
        rebuild(engine)
    else:
        for statement in tables.views_sql():
            engine.command(statement)
        engine.command(
            f"INSERT INTO {DEFINITIONS} VALUES ({{d:String}}, now64(3))", {"d": DEFINITION}
        )


def rebuild(engine: Engine) -> None:
    """Recompute rollups and names from every row, under the current definition.

    The views are dropped first and made again after, so run it while nothing loads (the
    ``linehaul rollup --rebuild`` command, or a publish opening the warehouse).
    """
    engine.command(f"DROP VIEW IF EXISTS {tables.ROLLUPS_VIEW}")
    engine.command(f"DROP VIEW IF EXISTS {tables.PROJECTS_VIEW}")
    engine.command(f"TRUNCATE TABLE {tables.ROLLUPS}")
    engine.command(f"TRUNCATE TABLE {tables.PROJECTS}")
    engine.command(f"INSERT INTO {tables.ROLLUPS} {tables.rollup_select()}")
    engine.command(f"INSERT INTO {tables.ROLLUPS} {tables.markers_select()}")
    engine.command(f"INSERT INTO {tables.PROJECTS} {tables.projects_select()}")
    for statement in tables.views_sql():
        engine.command(statement)
    engine.command(f"TRUNCATE TABLE {DEFINITIONS}")
    engine.command(f"INSERT INTO {DEFINITIONS} VALUES ({{d:String}}, now64(3))", {"d": DEFINITION})


class ClickHouseWarehouse:
    """Result files into ClickHouse, each once (see the module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        try:
            prepare(engine)
        except BaseException:
            engine.close()
            raise

    @classmethod
    def from_url(cls, url: str) -> ClickHouseWarehouse:
        return cls(open_engine(url))

    def load(self, table: str, files: Sequence[tuple[str, bytes]]) -> LoadResult:
        """Each file not booked yet: one deduplicated insert, then its bookkeeping."""
        if table not in EVENT_TABLES:
            raise ValueError(f"unknown table {table!r}")
        return self._load(table, [(name, data, ndjson_rows(data)) for name, data in files])

    def load_local(self, table: str, files: Sequence[LocalFile]) -> LoadResult:
        """Files on this machine: chDB reads them where they lie; the rows of each are its
        lines (counted, as a writer's hint cannot be checked against a per-file insert)."""
        if table not in EVENT_TABLES:
            raise ValueError(f"unknown table {table!r}")
        return self._load(
            table, [(file.name, file.path, ndjson_rows(file.path.read_bytes())) for file in files]
        )

    def load_parquet(self, table: str, file: LocalFile) -> LoadResult:
        """A Parquet file (an export's) once, as result files are, in parts when large (see
        the module doc)."""
        rows = _parquet_rows(file.path)
        with _parquet_parts(file.path, rows) as parts:
            return self._load(table, [(file.name, parts, rows)], fmt="Parquet")

    def _load(
        self,
        table: str,
        files: Sequence[tuple[str, Path | bytes | list[Path | bytes], int]],
        fmt: str = "JSONEachRow",
    ) -> LoadResult:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        names = [name for name, _, _ in files]
        booked = {
            row[0]
            for row in self.engine.rows(
                f"SELECT name FROM {LOADED} WHERE name IN {{names:Array(String)}}",
                {"names": names},
            )
        }
        result = LoadResult(skipped=[name for name in names if name in booked])
        done: list[tuple[str, int]] = []
        inserted: dict[str, tuple[str, Path | bytes]] = {}  # token: (name for it, source)
        before = self._total_rows(table)
        try:
            for name, source, rows in files:
                if name in booked:
                    continue
                for key, part in _inserts(name, source):
                    self.engine.insert(insert_sql(table, key, fmt), part)
                    if rows:  # an empty file leaves nothing to check
                        inserted[token(table, key)] = (key, part)
                done.append((name, rows))
                result.rows += rows
        finally:
            if done:  # books what went in, also when a later file failed
                self._make_sure(
                    table,
                    inserted,
                    fmt,
                    self._total_rows(table) - before == sum(r for _, r in done),
                )
                self.engine.command(
                    f"INSERT INTO {LOADED} SELECT tupleElement(f, 1), {{table:String}}, "
                    "tupleElement(f, 2), now64(3) "
                    "FROM (SELECT arrayJoin(arrayZip({names:Array(String)}, "
                    "{rows:Array(UInt64)})) AS f)",
                    {"table": table, "names": [n for n, _ in done], "rows": [r for _, r in done]},
                )
        result.loaded = [name for name, _ in done]
        return result

    def _make_sure(
        self, table: str, inserted: dict[str, tuple[str, Path | bytes]], fmt: str, grew: bool
    ) -> None:
        """The rows of each insert in ``inserted`` (by token), and in ``file_downloads`` its
        rollups, are there; what a kill left out is mended (see the module doc). ``grew``:
        the table gained as many rows as the inserts sent, so each went in."""
        if not inserted:
            return
        if not grew:
            self._mend_rows(table, inserted, fmt)
        if table != tables.ROLLUPS_SOURCE:
            return
        for each in sorted(set(inserted) - self._with_markers(list(inserted))):
            log.warning("%s: rollups of %s missing: computing them", table, inserted[each][0])
            self._mend_rollups(each)
        if unmarked := sorted(set(inserted) - self._with_markers(list(inserted))):
            key = inserted[unmarked[0]][0]
            raise WarehouseError(f"{self.engine.name}: rollups of {key} missing after mending")

    def _mend_rows(
        self, table: str, inserted: dict[str, tuple[str, Path | bytes]], fmt: str
    ) -> None:
        """Insert again, rows alone, each of ``inserted`` whose token has no rows."""
        for _ in range(2):
            missing = sorted(set(inserted) - self._with_rows(table, list(inserted)))
            if not missing:
                return
            for each in missing:
                key, source = inserted[each]
                log.warning("%s: rows of %s missing after their insert: inserting them", table, key)
                self.engine.insert(insert_sql(table, key, fmt, mend=True), source)
        key = inserted[missing[0]][0]
        raise WarehouseError(f"{self.engine.name}: rows of {key} missing after mending")

    def _total_rows(self, table: str) -> int:
        found = self.engine.rows(
            "SELECT total_rows FROM system.tables "
            "WHERE database = currentDatabase() AND name = {table:String}",
            {"table": table},
        )
        return int(found[0][0] or 0)

    def _with_rows(self, table: str, tokens: list[str]) -> set[str]:
        """Which of ``tokens`` have rows in ``table``."""
        found = self.engine.rows(
            f"SELECT DISTINCT {tables.FILE_TOKEN} FROM {quote(table)} "
            f"WHERE {tables.FILE_TOKEN} IN {{tokens:Array(String)}}",
            {"tokens": tokens},
        )
        return {row[0] for row in found}

    def _with_markers(self, tokens: list[str]) -> set[str]:
        """Which of ``tokens`` have their marker among the rollups."""
        found = self.engine.rows(
            f"SELECT DISTINCT value FROM {tables.ROLLUPS} WHERE project = '' "
            f"AND dimension = '{tables.MARKER}' AND value IN {{tokens:Array(String)}}",
            {"tokens": tokens},
        )
        return {row[0] for row in found}

    def _mend_rollups(self, insert_token: str) -> None:
        """The rollups and marker of one insert's rows in one block (so all or none), and
        its project names (a ``ReplacingMergeTree``: again is harmless)."""
        rows = (
            f"(SELECT * FROM {tables.ROLLUPS_SOURCE} WHERE {tables.FILE_TOKEN} = {{token:String}})"
        )
        once = settings_sql({**INSERT_SETTINGS, "insert_deduplicate": 0, "max_threads": 1})
        self.engine.command(
            f"INSERT INTO {tables.ROLLUPS} {tables.rollup_select(rows)} UNION ALL "
            f"{tables.marker_select('{token:String}', rows)} {once}",
            {"token": insert_token},
        )
        self.engine.command(
            f"INSERT INTO {tables.PROJECTS} {tables.projects_select(rows)}", {"token": insert_token}
        )

    def add_distributions(self, rows: Sequence[bytes]) -> list[str]:
        """``distribution_metadata`` rows whose filename the table lacks, in one insert (see
        the module doc); the filenames added. A filename twice in ``rows`` goes in once."""
        by_name: dict[str, bytes] = {}
        for row in rows:
            by_name.setdefault(str(orjson.loads(row)["filename"]), row)
        present = self._filenames(sorted(by_name))
        fresh = sorted(name for name in by_name if name not in present)
        if not fresh:
            return []
        batch = "\0".join(fresh)
        data = b"".join(by_name[name].rstrip(b"\n") + b"\n" for name in fresh)
        self.engine.insert(insert_sql(DISTRIBUTIONS, None), data)
        self.engine.command(
            f"INSERT INTO {LOADED} VALUES ({{name:String}}, {{table:String}}, "
            "{rows:UInt64}, now64(3))",
            {
                "name": f"{DISTRIBUTIONS}/{token(DISTRIBUTIONS, batch)}",
                "table": DISTRIBUTIONS,
                "rows": len(fresh),
            },
        )
        return fresh

    def distribution_files(self) -> set[str]:
        return set(self._filenames(None))

    def _filenames(self, names: list[str] | None) -> set[str]:
        """Which of ``names`` (all, for None) ``distribution_metadata`` holds."""
        sql = f"SELECT DISTINCT filename FROM {DISTRIBUTIONS}"
        if names is None:
            return {row[0] for row in self.engine.rows(sql)}
        found = self.engine.rows(sql + " WHERE filename IN {names:Array(String)}", {"names": names})
        return {row[0] for row in found}

    def rebuild_rollups(self) -> None:
        rebuild(self.engine)

    def close(self) -> None:
        self.engine.close()
