"""Which answers are quick and which long: two lanes, so that a few long cold answers never
hold up the crowd of quick ones right after a publish.

A publish makes every cached answer it changed cold at once (after a rebuild or a late
batch, most of them: :mod:`.changes`), and in that moment a badge service polling thousands
of badges, browsers revalidating what they cached (a 304 needs the answer's ETag, so the
answer is computed) and a few visitors of expensive pages arrive together. Cold, at 50M rows
on the Intel Xeon (server CPU per answer, BENCHMARKS.md): a badge, the shields endpoint and
pypistats' ``recent`` 3-10 ms, ``overall`` 4-20 ms; a project page 70-110 ms, a compare of
five projects over their whole history 100-110 ms, ``top`` 60-70 ms, ``trending`` 140-180
ms, the home page 240-260 ms; the other API routes 20-90 ms, as the client's breakdown and
range make them. The quick routes are the ones badge services and pollers ask, and the
cheapest; every other route is long.

A long answer computes on the lane's own threads and admission (:mod:`.shedding`), and
runs its Python in one of the long turns only (:func:`pythonhosted.threads.computing`):
quick answers always have a turn, threads and admission slots that no long answer holds.
"""

from __future__ import annotations

import re

QUICK = re.compile(
    r"/badge/[^/]+\.svg|/api/v1/projects/[^/]+/shields|/api/packages/[^/]+/(recent|overall)"
)


def is_long(path: str) -> bool:
    """Whether the answer to ``path`` is computed in the long lane."""
    return QUICK.fullmatch(path) is None
