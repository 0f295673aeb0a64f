"""Close names for an unknown project ("did you mean ..."), found by index, not by scan.

Comparing the unknown name with every recorded one costs a read of all names per question
(38-42 ms of CPU at 300,000 names, BENCHMARKS.md), and a flood of distinct unknown names
(typos from a badge service, or hostile) then costs that each. So the candidates come from
a deletion neighbourhood, as SymSpell finds them: :data:`VARIANTS` holds, for each
normalised name, a hash of the name and of each string made by deleting one of its
characters, indexed. A question computes the same for the unknown name and looks its
variants up in the index: the names that share one are those one edit away (a character
missing, added, changed, or two swapped), and rarely a few more. They are then ranked as
before, by Jaro-Winkler similarity (at least 0.8, the best first, ties by name): a lookup
reads the rows of the names it finds, however many names there are.

What that gives up against comparing with every name: a name two or more edits away that
still scores 0.8 (a long shared prefix, ``sphinx`` for ``sphinx-rtd``) is not suggested.

The variants are a hash (64 bits of MD5, stable across DuckDB releases, unlike ``hash``) so
the index holds integers: 11-18 rows per name, about 1 KB per name with the index.
:func:`record` adds those of new names in the load that records the names
(:mod:`.spellings`), :func:`ensure` fills the table once for a warehouse made before it,
and a warehouse not opened for loading since is asked the old way
(:func:`pythonhosted.warehouse.stats.close_names`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import duckdb

VARIANTS = "project_name_variants"
CUTOFF = 0.8  # Jaro-Winkler similarity at least this
LONGEST = 128
"""Unknown names longer than this (PEP 503-normalised) get no suggestions: a hostile name's
variants, one per character, would otherwise be thousands of lookups (and past 2,048 DuckDB
reads the table instead)."""
INDEXED = LONGEST + 1
"""Recorded names longer than this have no variants: no unknown name that gets suggestions
is one edit from them. A name's variants cost the square of its length to make (each is a
copy of the name but one character), and a log line may name a project of 30,000
characters: one such line cost a publish 7.8 s of CPU and 2.1 GB, four of them 35 s and
7.2 GB (BENCHMARKS.md)."""
_HASH = "CAST(md5_number({}) >> 64 AS UBIGINT)"


def _variants_sql(names: str) -> str:
    """(variant, normalized) of each ``normalized`` of the query ``names`` at most
    :data:`INDEXED` characters long: the hashes of the name (``i`` 0) and of each deletion
    of one of its characters (the ``i``-th)."""
    deletion = "concat(left(normalized, i - 1), substr(normalized, i + 1))"
    variant = f"CASE i WHEN 0 THEN normalized ELSE {deletion} END"
    return (
        f"SELECT DISTINCT {_HASH.format(variant)} AS variant, normalized "
        f"FROM (SELECT normalized FROM ({names}) WHERE length(normalized) <= {INDEXED}), "
        "range(0, length(normalized) + 1) AS r(i)"
    )


def ensure(con: duckdb.DuckDBPyConnection, projects: str) -> None:
    """Create the table and its index if missing, filled from the normalised names of
    ``projects``. Call inside the writer's transaction, after ``projects`` exists."""
    found = con.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_name = ?", [VARIANTS]
    ).fetchone()
    if found is not None:
        return
    con.execute(f"CREATE TABLE {VARIANTS} (variant UBIGINT NOT NULL, normalized VARCHAR NOT NULL)")
    names = f"SELECT DISTINCT normalized FROM {projects}"
    con.execute(f"INSERT INTO {VARIANTS} {_variants_sql(names)}")
    con.execute(f"CREATE INDEX {VARIANTS}_variant ON {VARIANTS} (variant)")


def record(con: duckdb.DuckDBPyConnection, normalized: Sequence[str]) -> None:
    """Add the variants of ``normalized``, names not recorded before."""
    if normalized:
        names = "SELECT unnest(?) AS normalized"
        con.execute(f"INSERT INTO {VARIANTS} {_variants_sql(names)}", [list(normalized)])


def clear(con: duckdb.DuckDBPyConnection) -> None:
    """Forget every name (before recording them all again)."""
    con.execute(f"DELETE FROM {VARIANTS}")


def close_names(con: duckdb.DuckDBPyConnection, normalized: str, limit: int = 3) -> list[str]:
    """Recorded names one edit from ``normalized`` (and few others), by Jaro-Winkler
    similarity at least :data:`CUTOFF`, the best first; ``CatalogException`` when the
    warehouse has no variants (made by an older release, not opened for loading since).

    One statement: the variants' hashes (:func:`variants`) go in as a constant of the
    column's type, which DuckDB looks up in the index, and the candidates are materialised
    before they are scored. Otherwise DuckDB reads the whole table: a subquery for the
    hashes is a join, a list of Python integers a cast of every row, and the score's
    condition pushed down beside the lookup's makes it a filtered scan."""
    if len(normalized) > LONGEST:
        return []
    rows = con.execute(
        "WITH candidates AS MATERIALIZED (SELECT DISTINCT normalized FROM "
        f"{VARIANTS} WHERE list_contains(?::UBIGINT[], variant)) "
        "SELECT normalized, jaro_winkler_similarity(normalized, ?) AS score FROM candidates "
        "WHERE score >= ? ORDER BY score DESC, normalized LIMIT ?",
        [sorted(variants(normalized)), normalized, CUTOFF, limit],
    ).fetchall()
    return [row[0] for row in rows]


def variants(normalized: str) -> set[int]:
    """The hashes of ``normalized`` and of each deletion of one of its characters, as
    :func:`_variants_sql` makes them (DuckDB's ``left`` and ``substr`` count code points, as
    Python does; ``md5_number`` is the digest read little-endian): computed here, a
    statement fewer per question."""
    deletions = (normalized[:at] + normalized[at + 1 :] for at in range(len(normalized)))
    return {
        int.from_bytes(hashlib.md5(text.encode(), usedforsecurity=False).digest()[8:], "little")
        for text in (normalized, *deletions)
    }
