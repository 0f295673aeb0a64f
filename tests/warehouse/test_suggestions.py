"""Close names for an unknown project come from an index: a lookup among 100,000 names reads
the rows of the few names one edit away, not every name (counted by DuckDB's profiler), and
ranks them as comparing with every name did."""

from __future__ import annotations

import random
from pathlib import Path
from string import ascii_lowercase
from typing import cast

import duckdb
import pytest

from pythonhosted.warehouse import rollups, suggestions
from pythonhosted.warehouse.access import reading
from pythonhosted.warehouse.duck import DuckDBWarehouse
from pythonhosted.warehouse.stats import UnknownProject, check_project
from support.scanned import Scanned

# On one pytest worker, which builds its warehouse of 100,000 names once.
pytestmark = pytest.mark.xdist_group("suggestions")

NAMES = 100_000
TYPOS = {  # an unknown name -> its suggestions
    "project-1234x": ["project-1234", "project-10234", "project-11234"],
    # Comparing with every name also offered project-19999 (two edits away).
    "roject-99999": ["project-99999", "project-9999"],
    "zzzz-nothing-like": [],
    # Comparing with every name also offered project-177 and project-277 (two edits away).
    "projetc-77": ["project-77"],
    # ... and project-2 third (two edits away), where now project-342 (one) is.
    "project-42-": ["project-42", "project-142", "project-342"],
}
AS_BEFORE = ("project-1234x", "zzzz-nothing-like")


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse of ``NAMES`` project names (``Project_<n>``), built directly, its
    variants made when it is opened for loading, as for a warehouse from before them."""
    path = tmp_path_factory.mktemp("names") / "w.duckdb"
    warehouse = DuckDBWarehouse(path)
    warehouse.con.execute(
        f"INSERT INTO {rollups.PROJECTS} SELECT 'Project_' || n, 'project-' || n "
        f"FROM range({NAMES}) AS t(n)"
    )
    warehouse.con.execute(f"DROP TABLE {suggestions.VARIANTS}")
    warehouse.close()
    DuckDBWarehouse(path).close()
    return path


def _every_name(con: duckdb.DuckDBPyConnection, normalized: str) -> list[str]:
    """What comparing with every name suggests (the way this replaced)."""
    rows = con.execute(
        "SELECT normalized, jaro_winkler_similarity(normalized, ?) AS score "
        f"FROM (SELECT DISTINCT normalized FROM {rollups.PROJECTS}) WHERE score >= 0.8 "
        "ORDER BY score DESC, normalized LIMIT 3",
        [normalized],
    ).fetchall()
    return [row[0] for row in rows]


def test_an_unknown_name_reads_the_rows_of_the_names_one_edit_away(
    path: Path, tmp_path: Path
) -> None:
    with reading(path) as con:
        for typo, expected in TYPOS.items():
            if typo in AS_BEFORE:
                assert _every_name(con, typo) == expected
            scanned = Scanned(con, tmp_path / "profile.json")
            with pytest.raises(UnknownProject) as unknown:
                check_project(cast(duckdb.DuckDBPyConnection, scanned), typo)
            assert unknown.value.close == expected
            # The name's own key, then the candidates' variants: tens of rows, not the
            # 100,000 names (or their 1.4M variants).
            assert scanned.scanned(rollups.PROJECTS) == 0
            assert scanned.scanned(suggestions.VARIANTS) <= 50
        assert check_project(con, "PROJECT.1234") == "project-1234"


def test_hostile_and_long_names_read_nothing_and_are_parameters(path: Path, tmp_path: Path) -> None:
    with reading(path) as con:
        scanned = Scanned(con, tmp_path / "profile.json")
        for name in ("p" * 5000, "x'; DROP TABLE project_names; --\\\t\n", "é" * 100):
            with pytest.raises(UnknownProject) as unknown:
                check_project(cast(duckdb.DuckDBPyConnection, scanned), name)
            assert unknown.value.close == []
        assert max(scanned.rows.values()) == 0
        assert con.execute(f"SELECT count(*) FROM {rollups.PROJECTS}").fetchone() == (NAMES,)


def test_variants_follow_loads_and_rebuilds(tmp_path: Path) -> None:
    """A rebuild records every name again, and the variants with them, once each."""
    path = tmp_path / "w.duckdb"
    warehouse = DuckDBWarehouse(path)
    try:
        con = warehouse.con
        con.execute(
            f"INSERT INTO {rollups.PROJECTS} VALUES ('Demo_Pkg', 'demo-pkg'), "
            "('demo.pkg', 'demo-pkg')"
        )
        suggestions.record(con, ["demo-pkg"])
        before = con.execute(f"SELECT count(*) FROM {suggestions.VARIANTS}").fetchone()
        assert before == (len("demo-pkg") + 1,)
        assert suggestions.close_names(con, "demo-pk") == ["demo-pkg"]
        warehouse.rebuild_rollups()  # no rows: no names, no variants
        assert con.execute(f"SELECT count(*) FROM {suggestions.VARIANTS}").fetchone() == (0,)
        assert suggestions.close_names(con, "demo-pk") == []
    finally:
        warehouse.close()


def test_names_too_long_to_be_suggested_have_no_variants(tmp_path: Path) -> None:
    """A recorded name past ``LONGEST + 1`` characters is one edit from no name short enough to
    get suggestions, and its variants cost the square of its length to make: a log line
    naming a project of 30,000 characters cost a publish 7.8 s of CPU and 2.1 GB."""
    rng = random.Random(14)
    long, edge = (
        "".join(rng.choices(ascii_lowercase, k=k)) for k in (20_000, suggestions.LONGEST + 1)
    )
    names = [long, edge, "demo-pkg"]
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        con = warehouse.con
        con.execute(f"INSERT INTO {rollups.PROJECTS} SELECT unnest(?), unnest(?)", [names, names])
        expected = {edge: len(suggestions.variants(edge)), "demo-pkg": len("demo-pkg") + 1}
        count = f"SELECT normalized, count(*) FROM {suggestions.VARIANTS} GROUP BY ALL"
        suggestions.record(con, names)  # as a load records its new names
        assert dict(con.execute(count).fetchall()) == expected
        assert suggestions.close_names(con, edge[:-1]) == [edge]
        con.execute(f"DROP TABLE {suggestions.VARIANTS}")
        suggestions.ensure(con, rollups.PROJECTS)  # as a warehouse from before them
        assert dict(con.execute(count).fetchall()) == expected
    finally:
        warehouse.close()


def test_a_question_hashes_the_variants_as_the_warehouse_does() -> None:
    """The unknown name's variants are hashed in Python, the stored ones in SQL: the same."""
    con = duckdb.connect()
    names = ["demo-pkg", "a", "zope-interface", "ééè-x", "ę̃x", "日本語-pkg", "x" * 128]
    con.execute("CREATE TABLE names AS SELECT unnest(?) AS normalized", [names])
    stored = con.execute(
        f"SELECT normalized, list(variant) FROM ({suggestions._variants_sql('FROM names')}) "
        "GROUP BY normalized"
    ).fetchall()
    assert {name: set(found) for name, found in stored} == {
        name: suggestions.variants(name) for name in names
    }


def test_a_warehouse_from_before_the_variants_compares_with_every_name(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    warehouse = DuckDBWarehouse(path)
    warehouse.con.execute(
        f"INSERT INTO {rollups.PROJECTS} VALUES ('Demo_Pkg', 'demo-pkg'), ('alpha', 'alpha')"
    )
    warehouse.con.execute(f"DROP TABLE {suggestions.VARIANTS}")
    warehouse.close()
    with reading(path) as con:
        with pytest.raises(UnknownProject) as unknown:
            check_project(con, "demo-pkgz-extra")  # two edits: only every name finds it
        assert unknown.value.close == ["demo-pkg"]
    DuckDBWarehouse(path).close()  # opened for loading: the variants are made
    with reading(path) as con:
        assert suggestions.close_names(con, "demo-pkgz") == ["demo-pkg"]
        with pytest.raises(UnknownProject) as unknown:
            check_project(con, "demo-pkgz-extra")
        assert unknown.value.close == []
