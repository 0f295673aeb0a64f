"""What each publish changed, folded per data version: the cache's look-up (Python API)."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from pythonhosted.stats_web import changes as changes_module
from pythonhosted.stats_web.changes import ANY, Changes
from pythonhosted.warehouse.rollups import CHANGES, LATE
from support.stats_warehouse import TODAY, YESTERDAY


def test_a_version_whose_change_is_unknown_changes_everything() -> None:
    """A version without its row (a load by an older release) keeps no answer across it;
    the versions after it are folded as usual."""
    con = duckdb.connect()
    con.execute(f"CREATE TABLE {CHANGES} (version BIGINT, first_day DATE, uploads BOOLEAN)")
    changes = Changes()
    changes.read(con, 5)  # the first version seen: nothing cached is older
    con.execute(
        f"INSERT INTO {CHANGES} VALUES (6, ?, false), (8, ?, false), (9, NULL, true)",
        [TODAY, TODAY],
    )
    changes.read(con, 9)
    last = YESTERDAY.toordinal()
    assert changes.kept(7, 9, last, False, False)
    assert not changes.kept(7, 9, TODAY.toordinal(), False, False)  # read the day 8 touched
    assert not changes.kept(7, 9, last, True, False)  # shows the uploads 9 added
    assert not changes.kept(7, 9, last, False, True)  # shows what any publish moves
    assert not changes.kept(6, 9, last, False, False)  # 7 is unknown
    assert not changes.kept(5, 9, last, False, False)
    assert not changes.kept(7, 10, last, False, False)  # a version not read yet
    con.close()


def test_a_late_part_changes_only_the_projects_it_names_before_its_newest_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A project's answer over complete days outlives the late parts that did not name it;
    one across projects (ANY) does not, nor one reading the newest day a late part
    brought; a version without its late part's row names every project. Versions folded
    out of the kept window take their names with them, and the rest still answer."""
    con = duckdb.connect()
    con.execute(f"CREATE TABLE {CHANGES} (version BIGINT, first_day DATE, uploads BOOLEAN)")
    con.execute(f"CREATE TABLE {LATE} (version BIGINT, newest_day DATE, projects VARCHAR[])")
    changes = Changes()
    changes.read(con, 5)
    day = {n: (TODAY - timedelta(days=n)).toordinal() for n in range(4)}
    rows = [(6, 1, ["a"]), (7, 0, None), (8, 2, ["a", "b"]), (9, 1, ["b"]), (10, 3, None)]
    for version, ago, named in rows:
        con.execute(
            f"INSERT INTO {CHANGES} VALUES (?, ?, false)", [version, TODAY - timedelta(ago)]
        )
        if named is not None:
            con.execute(f"INSERT INTO {LATE} VALUES (?, ?, ?)", [version, TODAY, named])
    con.execute(f"INSERT INTO {CHANGES} VALUES (11, NULL, true)")
    changes.read(con, 9)
    expected = {
        (5, 1, "c"): True,  # never named, and no version touched every project before today
        (5, 0, "c"): False,  # today: every project's
        (5, 1, ANY): False,  # across projects: any day touched from the first
        (5, 1, "a"): False,
        (8, 1, "a"): True,  # after 8 only b was named
        (8, 1, "b"): False,  # 9 named b from yesterday
        (8, 2, "b"): True,
        (6, 2, "a"): False,  # 8 named a from two days ago
        (6, 3, "a"): True,
        (5, 3, "b"): True,
    }
    for (version, ago, project), kept in expected.items():
        assert changes.kept(version, 9, day[ago], False, False, project=project) is kept
    changes.read(con, 11)  # 10 has no late row: every project from three days ago
    assert not changes.kept(9, 11, day[3], False, False, project="c")
    assert changes.kept(10, 11, day[1], False, False, project="c")
    assert not changes.kept(10, 11, day[1], True, False, project="c")  # uploads in 11
    monkeypatch.setattr(changes_module, "KEPT", 4)
    con.execute(f"INSERT INTO {CHANGES} VALUES (12, ?, false)", [TODAY - timedelta(1)])
    con.execute(f"INSERT INTO {LATE} VALUES (12, ?, ['c'])", [TODAY])
    changes.read(con, 12)  # 6, 7 and 8 folded out
    assert not changes.kept(8, 12, day[3], False, False, project="c")
    assert not changes.kept(9, 12, day[2], False, False, project="a")  # 10 changed every one
    assert changes.kept(10, 12, day[2], False, False, project="b")
    assert not changes.kept(10, 12, day[1], False, False, project="c")
    assert changes.kept(11, 12, day[1], False, False, project="b")
    con.close()
