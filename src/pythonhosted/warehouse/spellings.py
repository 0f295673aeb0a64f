"""Recording a load's spellings of project names by probing the key, not reading the table.

``project_names`` (downloads) and ``distribution_names`` (uploads) map each stored spelling of
a project to its PEP 503 name, ``name`` their primary key, ``normalized`` indexed. Each load
records the spellings of its rows that the table lacks. Asking the table "which of these
are new" as an anti-join (``NOT IN``/``NOT EXISTS`` a subquery) or as ``INSERT OR IGNORE``
makes DuckDB read every stored name, however few the load brings: it plans them as a hash
join whose build side is the whole table (``OR IGNORE`` is a join too, and pushes the load's
names into the table's scan as an index lookup only up to 50 of them). At a million names
that was a million rows read on every load (BENCHMARKS.md).

So the load's distinct spellings go in as one list constant: ``list_contains(?, name)`` is
a filter DuckDB answers from the key's index, a lookup per spelling, as long as fewer than
``index_scan_max_count`` (2,048 by default) rows match. Past :data:`PROBES` spellings a
hash join reads the table once, which is then the cheaper way (a lookup fetches its row
from a column segment of its own: about 40 us of CPU, against 60-100 ns a row read in
order; at a million names the two cost the same near 1,600 spellings). The new spellings'
normalised names are checked the same way, on the ``normalized`` index.

A lookup costs far more than a row read in order, so a small table is cheaper read whole:
below :data:`JOINED_BELOW` stored names a load of downloads asks for its new spellings in one
anti-join of its rows with the table (:func:`add` then records them). A 5,700-row load of
1,890 spellings against 5,000 names: 2.5 ms, where looking each up took 15-21 ms and
reading them out of the rows first 2-3 ms more (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

NORMALIZED = "lower(regexp_replace(name, '[-_.]+', '-', 'g'))"  # PEP 503, of a ``name``
PROBES = 2048
"""Values looked up by index at most: DuckDB's ``index_scan_max_count`` (by default; it also
looks up 0.1 % of a table's rows, more than this past 2M rows, but a join is cheaper then)."""
JOINED_BELOW = 50_000
"""Stored names under which reading them all (a hash join, ~35 ns a name) costs about what
a few dozen lookups do (10-35 us each): the new spellings are then found by an anti-join."""


def record(con: duckdb.DuckDBPyConnection, table: str, names: Iterable[str]) -> list[str]:
    """Insert into ``table`` (``name``, ``normalized``) the spellings among ``names`` it does
    not hold yet; return the normalised names that were not in it before, sorted (a new
    spelling of a known project adds none)."""
    spellings = sorted(set(names))
    if not spellings:
        return []
    stored = {row[0] for row in _matching(con, "name", table, "name", spellings)}
    return add(con, table, [name for name in spellings if name not in stored])


def add(con: duckdb.DuckDBPyConnection, table: str, new: list[str]) -> list[str]:
    """Insert the spellings ``new`` (distinct, none of them in ``table``); return the
    normalised names that were not in it before, sorted."""
    if not new:
        return []
    inserted = con.execute(
        f"INSERT INTO {table} SELECT name, {NORMALIZED} FROM (SELECT unnest(?) AS name) "
        "RETURNING normalized",
        [new],
    ).fetchall()
    normalized = sorted({row[0] for row in inserted})
    # Those spelled otherwise before: a row for them that is not one of the new spellings
    # (told apart here: a second condition in the statement makes DuckDB read the table).
    rows = _matching(con, "normalized, name", table, "normalized", normalized)
    fresh = set(new)
    seen = {found for found, name in rows if name not in fresh}
    return [name for name in normalized if name not in seen]


def _matching(
    con: duckdb.DuckDBPyConnection, columns: str, table: str, column: str, values: list[str]
) -> list[tuple[str, ...]]:
    """``columns`` of the rows of ``table`` whose ``column`` is among ``values``: by index
    for up to :data:`PROBES` values; past that as a hash join, reading the table once
    (``list_contains`` over a table it cannot answer by index compares each row with every
    value: 95 s for a million of each, where the join takes a fraction of a second)."""
    if len(values) <= PROBES:
        where = f"list_contains(?, {column})"
    else:
        where = f"{column} IN (SELECT unnest(?))"
    return con.execute(f"SELECT {columns} FROM {table} WHERE {where}", [values]).fetchall()
