"""The embedded warehouse: one DuckDB file with the BigQuery tables as nested STRUCTs.

Each load is one transaction that inserts the rows and records the file names in
``linehaul_loaded_files``; a name already recorded is skipped, so a publish that dies
between loading and deleting a result file never loads it twice. NDJSON goes through DuckDB's
own ``read_json`` (columns given, unknown keys ignored, as BigQuery's
``ignore_unknown_values``), which is far faster than inserting rows from Python.

The load connection does not preserve insertion order: rows of one load may be stored in any
order, which nothing here depends on (stats and coverage aggregate; Parquet has no order). With
order preserved DuckDB inserts through its ordered batch insert, where each ``read_json``
buffer (tens of thousands of rows here) is a batch smaller than a row group and small batches
are merged by appending them again, so every string is appended, scanned and checked twice
(about a fifth more CPU time, and 40 % more wall time as the merging is partly serial).
Unordered, each thread appends its rows once.

All files of a load go into one ``INSERT``. One statement per file would give DuckDB's own
row count per file, but each thread's share of a file is then less than a row group, and
DuckDB keeps such remainders in the transaction and compresses and writes them serially at
commit: the load took 1.6-1.8 times as long. So the bookkeeping's rows per file come from
elsewhere:

- Files on local disk (:meth:`DuckDBWarehouse.load_local`, a local results store) are read
  where they lie, and their counts are ingest's, from the files' metadata, taken when they add
  up to the rows DuckDB inserted (otherwise the files are counted). Nothing is copied: 15 %
  faster than loading the same contents. Except small files (under :data:`SMALL_FILE`): each
  file ``read_json`` opens costs it about 1-5 ms, so a load of a thousand small result files
  (many tiny log objects) took 0.8-5 s in place and 0.15-0.3 s through one spool; they are
  copied into one and counted, and the spool read with the large files in the same
  ``INSERT``.
- Contents (:meth:`DuckDBWarehouse.load`, a cloud results store) go into one spool file,
  written by one ``writev`` call, which holds no GIL from start to end, while a worker thread
  counts their newlines (with a ``write`` per file the two threads took turns at every file,
  as ``bytes.count`` keeps the GIL while it scans a whole file).

DuckDB allows one writing process per file and no readers from other processes meanwhile, so
publish opens the file per pass, announced to readers (:mod:`.access`), and readers use the
writer's connection in its own process or wait briefly for it to close in another.

A load into ``file_downloads`` also records new project spellings, appends its rows' daily
totals (and breakdowns, for days settled already) to the rollups and rolls up the days it
settles, and a load of either table bumps the data version and records what it changed (the
earliest day of its downloads, and the projects of its days before the newest: a late
batch's), in the same transaction (:mod:`.rollups`). A small load's ``INSERT`` is one
statement with the totals' (:func:`.rollups.insert_sql`), which also returns the new rows'
days and spellings; a load of several days reads its late projects in a statement of its
own (:func:`.rollups.late_projects`).

``distribution_metadata`` rows come one per uploaded file (``add_distributions``): a row
whose filename the table holds already is skipped in the insert's own transaction (the
filename is the table's primary key as well), so a batch loaded again after a crash adds
nothing. Columns the schema gained since a warehouse was made (``file_downloads.response``)
are added to it when it is opened for loading, NULL in its old rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb

from pythonhosted.errortext import first_line
from pythonhosted.warehouse import engine, metadata, rollups, uploads
from pythonhosted.warehouse.access import close_writer, open_writer
from pythonhosted.warehouse.base import LoadResult, LocalFile
from pythonhosted.warehouse.schema import EVENT_TABLES, TABLES, UNIQUE_KEYS, Field

log = logging.getLogger(__name__)

LOADED = "linehaul_loaded_files"
BATCH_TIME = r"(\d{4}-\d{2}-\d{2}T\d{2})-\d{2}-\d{2}"
"""The start of a batch's name: its UTC hour (the files edge names log objects
``downloads-2026-11-25T08-54-09.934-{host}-{pid}-{random}.log.gz``)."""
BATCH_HOUR = (
    f"try_strptime(regexp_extract(regexp_extract(name, '[^/]*$'), '{BATCH_TIME}', 1), "
    "'%Y-%m-%dT%H')"
)
"""SQL: the hour a bookkeeping row's batch started in, from its ``name``; NULL without one.
Recorded with the row (``batch_hour``), so coverage reads the hours it asks about instead of
parsing every name ever loaded."""
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S +00:00"
_TYPES = {"STRING": "VARCHAR", "TIMESTAMP": "TIMESTAMP", "BOOLEAN": "BOOLEAN", "INTEGER": "BIGINT"}
DISTRIBUTIONS = "distribution_metadata"
_TIMESTAMP_FORMATS = {DISTRIBUTIONS: metadata.TIMESTAMP_FORMAT}  # upload times keep their us
_GLOB = re.compile(r"[*?\[]")  # read_json takes such a path for a pattern
SMALL_FILE = 1 << 20  # local result files under this size are loaded through a spool
# Buffers one writev call takes (-1: no fixed limit; 16 is the least POSIX allows).
_IOV_MAX = max(os.sysconf("SC_IOV_MAX"), 16)


def duckdb_path(url: str) -> Path:
    """``duckdb:///abs/file.duckdb`` (or ``duckdb://rel/file.duckdb``) -> the file's path."""
    rest = url.removeprefix("duckdb:").removeprefix("//")
    if not rest:
        raise ValueError(f"DuckDB warehouse URL needs a path: {url!r}")
    return Path(rest)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_type(field: Field) -> str:
    """A schema field's DuckDB type: RECORD -> STRUCT, recursively; REPEATED -> a list."""
    if field.type == "RECORD":
        members = ", ".join(f"{quote(f.name)} {column_type(f)}" for f in field.fields)
        base = f"STRUCT({members})"
    else:
        base = _TYPES[field.type]
    return f"{base}[]" if field.mode == "REPEATED" else base


def _column_sql(field: Field) -> str:
    return (
        f"{quote(field.name)} {column_type(field)}{' NOT NULL' if field.mode == 'REQUIRED' else ''}"
    )


def create_table_sql(table: str) -> str:
    columns = [_column_sql(f) for f in TABLES[table]]
    if table in UNIQUE_KEYS:
        columns.append(f"PRIMARY KEY ({quote(UNIQUE_KEYS[table])})")
    return f"CREATE TABLE IF NOT EXISTS {quote(table)} ({', '.join(columns)})"


def _read_json_sql(
    table: str, paths: Sequence[str], where: str = "", *, verb: str = "INSERT"
) -> str:
    fields = TABLES[table]
    columns = ", ".join(f"{quote(f.name)}: '{column_type(f)}'" for f in fields)
    names = ", ".join(quote(f.name) for f in fields)
    sources = ", ".join("'" + path.replace("'", "''") + "'" for path in paths)
    return (
        f"{verb} INTO {quote(table)} SELECT {names} FROM read_json([{sources}], "
        f"columns={{{columns}}}, format='newline_delimited', "
        f"timestampformat='{_TIMESTAMP_FORMATS.get(table, TIMESTAMP_FORMAT)}') {where}"
    )


def _add_missing_columns(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Columns the schema has and an older warehouse's table lacks, added (NULL in its rows)."""
    present = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall()
    }
    for field in TABLES[table]:
        if field.name not in present:
            con.execute(
                f"ALTER TABLE {quote(table)} ADD COLUMN {quote(field.name)} {column_type(field)}"
            )


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT, rolled back on any error. A COMMIT that fails (a full disk) can end
    the transaction itself; the ROLLBACK then fails too, and its error ("cannot rollback - no
    transaction is active") hid the one that said what went wrong."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


class DuckDBWarehouse:
    """A DuckDB file holding ``file_downloads``, ``simple_requests`` and the bookkeeping."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # While a load into file_downloads runs: the marks it read, then what it inserted.
        self._before: rollups.Marks | None = None
        self._inserted: rollups.Inserted | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con = open_writer(path)
        self.con.execute("SET SESSION preserve_insertion_order = false")  # see the module doc
        # Holding the file read-write, no other process can be loading: spools left by a
        # killed publish are garbage.
        for stale in path.parent.glob(f".{path.name}.load-*"):
            stale.unlink(missing_ok=True)
        for table in TABLES:
            self.con.execute(create_table_sql(table))
            _add_missing_columns(self.con, table)
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {LOADED} (name VARCHAR PRIMARY KEY, "
            "table_name VARCHAR NOT NULL, rows BIGINT NOT NULL, loaded_at TIMESTAMP NOT NULL, "
            "batch_hour TIMESTAMP)"
        )
        with transaction(self.con):
            _ensure_batch_hours(self.con)
            if rollups.ensure(self.con):
                rollups.rebuild(self.con)
            uploads.ensure(self.con)

    def rebuild_rollups(self) -> None:
        """Recompute the rollups from every row, in one transaction."""
        with transaction(self.con):
            rollups.rebuild(self.con)

    def load(self, table: str, files: Sequence[tuple[str, bytes]]) -> LoadResult:
        """Load ``files`` into ``table`` in one transaction with their bookkeeping rows."""

        def insert(todo: list[int]) -> tuple[int, list[int]]:
            contents = [files[index][1] for index in todo]
            # Counting overlaps writing the spool (see the module doc).
            with ThreadPoolExecutor(1, thread_name_prefix="count-rows") as pool:
                counting = pool.submit(_counts, contents)
                inserted = self._insert_spooled(table, contents)
                return inserted, counting.result()

        return self._load(table, [name for name, _ in files], insert)

    def load_local(self, table: str, files: Sequence[LocalFile]) -> LoadResult:
        """Load local result files, large ones where they lie (no copy into memory), small
        ones (under :data:`SMALL_FILE`) through one spool, all in one ``INSERT``.

        Large files' writer's row counts go into the bookkeeping when they add up to the rows
        DuckDB inserted from them; otherwise (absent, or wrong) their lines are counted, as
        the small files' are.
        """

        def insert(todo: list[int]) -> tuple[int, list[int]]:
            chosen = [files[index] for index in todo]
            # A name read_json would expand as a pattern goes by the spool too.
            spooled = [_GLOB.search(str(f.path)) is not None or _small(f.path) for f in chosen]
            small = [f for f, by_spool in zip(chosen, spooled, strict=True) if by_spool]
            large = [f for f, by_spool in zip(chosen, spooled, strict=True) if not by_spool]
            contents = [f.path.read_bytes() for f in small]
            with contextlib.ExitStack() as stack:
                spool = [stack.enter_context(self._spool(contents))] if contents else []
                inserted = self._insert_json(table, spool + [str(f.path) for f in large])
            small_counts = _counts(contents)
            large_counts = [f.rows for f in large if f.rows is not None]
            if len(large_counts) < len(large) or sum(large_counts) + sum(small_counts) != inserted:
                large_counts = _counts([f.path.read_bytes() for f in large])
            counted = (iter(large_counts), iter(small_counts))
            return inserted, [next(counted[by_spool]) for by_spool in spooled]

        return self._load(table, [file.name for file in files], insert)

    def _load(
        self, table: str, names: list[str], insert: Callable[[list[int]], tuple[int, list[int]]]
    ) -> LoadResult:
        """One transaction: ``insert`` the files (by index) not loaded before, which returns
        the rows inserted and each file's rows; then their bookkeeping rows."""
        if table not in EVENT_TABLES:
            raise ValueError(f"unknown table {table!r}")
        result = LoadResult()
        con = self.con
        periods: list[tuple[date, date]] = []
        with transaction(con):
            done = {
                row[0]
                for row in con.execute(
                    f"SELECT name FROM {LOADED} WHERE list_contains(?, name)", [names]
                ).fetchall()
            }
            todo = [index for index, name in enumerate(names) if name not in done]
            result.skipped = [name for name in names if name in done]
            if todo:
                self._before = rollups.marks(con) if table == "file_downloads" else None
                self._inserted = None
                # the earliest day whose downloads the load touched (None: no download)
                first_day: date | None = None
                next_rowid: int | None = None
                totals: tuple[int, tuple[date, date] | None] | None = None
                late: tuple[date, list[str]] | None = None
                try:
                    result.rows, counts = insert(todo)
                    if self._before is not None:
                        added = rollups.add_new_rows(con, self._before, result.rows, self._inserted)
                        periods, first_day, totals = added.periods, added.first_day, added.totals
                        late = added.late
                        next_rowid = self._before.next_rowid + result.rows
                finally:
                    self._before = self._inserted = None
                rollups.bump(
                    con,
                    first_day=first_day,
                    uploads=False,
                    next_rowid=next_rowid,
                    totals=totals,
                    late=late,
                )
                _record_loaded(con, [names[index] for index in todo], table, counts)
                result.loaded = [names[index] for index in todo]
        for first, last in periods:  # the same numbers in fewer runs: after the commit
            try:
                rollups.regroup(con, first, last)
            except duckdb.Error as exc:
                log.warning(
                    "rollups of %s to %s left in more runs than needed (readers slower, "
                    "numbers right; duckdb.memory_limit is %s): %s",
                    first,
                    last,
                    engine.memory_limit(),
                    first_line(exc),
                )
        return result

    def add_distributions(self, rows: Sequence[bytes]) -> list[str]:
        """Insert ``distribution_metadata`` rows (JSON, one per file) whose filename the table
        does not hold yet, in one transaction that also bumps the data version; the
        filenames inserted. A filename twice in ``rows`` goes in once.

        Filenames the table holds are skipped by probing its key, row by row (``OR IGNORE``):
        the cost follows ``rows``, where an anti-join against the table's filenames read every
        upload ever recorded on each batch. The inserted rows' spellings of their project go
        into :data:`~.uploads.NAMES` in the same transaction."""
        con = self.con
        with transaction(con):
            with self._spool(rows) as spool:
                inserted = con.execute(
                    _read_json_sql(
                        DISTRIBUTIONS,
                        [spool],
                        "QUALIFY row_number() OVER (PARTITION BY filename) = 1 "
                        "RETURNING filename, name",
                        verb="INSERT OR IGNORE",
                    )
                ).fetchall()
            if inserted:
                uploads.record(con, [row[1] for row in inserted])
                rollups.bump(con, first_day=None, uploads=True)
        return sorted(row[0] for row in inserted)

    def distribution_files(self) -> set[str]:
        return {
            row[0] for row in self.con.execute(f"SELECT filename FROM {DISTRIBUTIONS}").fetchall()
        }

    @contextmanager
    def _spool(self, contents: Sequence[bytes]) -> Iterator[str]:
        """``contents`` as one NDJSON file beside the warehouse, for ``read_json``."""
        with tempfile.NamedTemporaryFile(
            dir=self.path.parent, prefix=f".{self.path.name}.load-", suffix=".json"
        ) as spool:
            parts: list[bytes] = []
            for data in contents:
                parts.append(data)
                if data and not data.endswith(b"\n"):
                    parts.append(b"\n")
            _write_all(spool.fileno(), parts)
            yield spool.name

    def _insert_spooled(self, table: str, contents: Sequence[bytes]) -> int:
        with self._spool(contents) as spool:
            return self._insert_json(table, [spool])

    def _insert_json(self, table: str, paths: Sequence[str]) -> int:
        """Insert the files' rows; for a small load into file_downloads, with their totals in
        the same statement, keeping what it returns for the rest of the maintenance."""
        sql = _read_json_sql(table, paths)
        size = sum(os.path.getsize(path) for path in paths)
        if self._before is not None and size <= rollups.ONE_STATEMENT_BYTES:
            # fetchall: the statement's result read to its end, so DuckDB ends it here
            returned = self.con.execute(rollups.insert_sql(sql, self._before)).fetchall()
            self._inserted = rollups.inserted(returned[0] if returned else None)
            return self._inserted.rows
        inserted = self.con.execute(sql).fetchone()
        return int(inserted[0]) if inserted else 0

    def close(self) -> None:
        close_writer(self.path, self.con)


def _record_loaded(
    con: duckdb.DuckDBPyConnection, names: list[str], table: str, counts: list[int]
) -> None:
    """The bookkeeping rows of a load's files, in one statement: ``executemany`` runs one
    statement per file, 2.2 ms each, which made a pass of 1,000 small result files spend
    2.2 s on its bookkeeping (0.09 s so)."""
    if len(names) != len(counts):
        raise ValueError(f"{len(names)} files but {len(counts)} row counts")
    con.execute(
        f"INSERT INTO {LOADED} SELECT name, ?, rows, now(), {BATCH_HOUR} "
        "FROM (SELECT unnest(?) AS name, unnest(?) AS rows)",
        [table, names, counts],
    )


def _ensure_batch_hours(con: duckdb.DuckDBPyConnection) -> None:
    """Give a bookkeeping table from before ``batch_hour`` the column, filled from its names
    (once: a name without a time stays NULL). Inside the writer's transaction."""
    present = con.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = ? AND column_name = "
        "'batch_hour'",
        [LOADED],
    ).fetchone()
    if present is None:
        con.execute(f"ALTER TABLE {LOADED} ADD COLUMN batch_hour TIMESTAMP")
        con.execute(f"UPDATE {LOADED} SET batch_hour = {BATCH_HOUR}")


def _small(path: Path) -> bool:
    return path.stat().st_size < SMALL_FILE


def _rows(data: bytes) -> int:
    """NDJSON lines in ``data``, a last line without its newline included."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _counts(contents: Sequence[bytes]) -> list[int]:
    return [_rows(data) for data in contents]


def _write_all(fd: int, parts: Sequence[bytes]) -> None:
    """Write ``parts`` to ``fd`` in as few ``writev`` calls as the OS allows (see the module
    doc): at most :data:`_IOV_MAX` buffers a call, and a short write resumes where it stopped."""
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]
