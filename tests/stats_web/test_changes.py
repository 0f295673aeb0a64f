"""What each publish changed, folded per data version: the cache's look-up (Python API)."""

from __future__ import annotations

import duckdb

from pythonhosted.stats_web.changes import Changes
from pythonhosted.warehouse.rollups import CHANGES
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
