"""Longer bounds on the request path for every store and upstream the tests' servers reach.

The production bounds are made for a store that answers in milliseconds or not at all: the
files edge gives its primary 2 s to connect and 2 s to the first byte before it falls back to
the archive (spec: files-edge.md), conveyor gives its store 2 s to connect, a store opened
without bounds gets 2 s and 2 s, none of them retries. In the tests the store is moto_server or
SeaweedFS, and the JSON API a small server, on the same two cores as everything else: beside
two busy loops (load 10-20) moto took over 2 s to answer, and the test's own upload or the
server under test gave up (a 503, a StoreUnavailable), though nothing was wrong.

So everything the tests start gets longer bounds, set once here (:func:`apply`, from
tests/conftest.py): a tenfold-oversubscribed machine's margin over the production ones, and
under :data:`support.processes.wait_until`'s and the test clients' 60 s, so a server that does
give up still answers before the client does. The production defaults stay what the code and
the docs say. A test that tests a timeout gives its own (``primary_read_timeout=0.5``,
``Timeouts(connect=0.5, read=0.5)``) and keeps it: these only replace the defaults.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from pythonhosted.config import ENV_PREFIX, ConveyorSettings, FilesSettings, Section
from pythonhosted.storage import Timeouts

CONNECT = 10.0
"""Seconds to connect: loopback's kernel accepts at once while the backlog has room."""
READ = 30.0
"""Seconds to a first byte (or between chunks): what a starved server was seen to need."""

STORE = Timeouts(connect=CONNECT, read=READ)
"""A store opened without bounds (the tests' own, to seed or check what a server did). Only
the bounds: these become ``Timeouts``' defaults, which code under test also builds on (the
request path's ``Timeouts(connect, read)``), so retries stay what the code says."""

SECTIONS: dict[str, tuple[type[Section], dict[str, float]]] = {
    "files": (
        FilesSettings,
        {
            "primary_connect_timeout": CONNECT,
            "primary_read_timeout": READ,
            "archive_connect_timeout": CONNECT,
            "archive_read_timeout": READ,
        },
    ),
    "conveyor": (
        ConveyorSettings,
        {"store_connect_timeout": CONNECT, "store_read_timeout": READ, "upstream_timeout": READ},
    ),
}
"""The settings that bound a service's requests to a store or an upstream, by section."""


def environment() -> dict[str, str]:
    """The ``PYTHONHOSTED_*`` variables that give a process the tests start these bounds."""
    return {
        f"{ENV_PREFIX}{section}__{name}".upper(): f"{seconds:g}"
        for section, (_, bounds) in SECTIONS.items()
        for name, seconds in bounds.items()
    }


def apply() -> None:
    """Give these bounds, where no one gave others, to:

    - processes the tests start (they inherit this environment), and settings loaded here
      (``Settings()``, ``load_settings()``): the environment variables, which the code reads
      as an operator's;
    - sections made here (``FilesSettings(primary=url)``, which reads no environment): their
      constructor takes the bounds as defaults (the fields' declared defaults are unchanged,
      so the documented-settings test still compares the code's with the docs');
    - stores opened here without bounds (``open_store(url)``): ``Timeouts()``'s defaults.
    """
    for name, value in environment().items():
        os.environ.setdefault(name, value)
    for section, bounds in SECTIONS.values():
        _defaults_in_constructor(section, bounds)
    Timeouts.__init__.__defaults__ = (
        STORE.connect,
        STORE.read,
        STORE.retries,
        STORE.retry_within,
        STORE.skip_hanging,
    )


def _defaults_in_constructor(section: type[Section], bounds: dict[str, float]) -> None:
    made_with = section.__init__

    @functools.wraps(made_with)
    def __init__(self: Section, /, **data: Any) -> None:
        made_with(self, **{**bounds, **data})

    section.__init__ = __init__  # type: ignore[method-assign]
