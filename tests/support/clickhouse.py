"""The network path's adapter, run against ClickHouse's engine without a network.

``HttpEngine`` (``clickhouse://``) drives a clickhouse-connect client: its query API with
server-side parameters, its decoding of ClickHouse's Native format, its inserts with data.
clickhouse-connect can put the same client API on chDB instead of HTTP (its ``chdb``
interface), so the tests run ``HttpEngine``'s code, unchanged, against the same engine
``chdb://`` uses. What this leaves untested is the HTTP transport itself (clickhouse-connect's)
and a real server, which cannot run here (Debian's clickhouse-server is from 2018): the
network path is contract-tested, as BigQuery's is.
"""

from __future__ import annotations

from pathlib import Path

import clickhouse_connect

from pythonhosted.warehouse.clickhouse.engines import ChdbEngine, Engine, HttpEngine

KINDS = ("chdb", "clickhouse-connect")


def connect_engine(path: Path) -> HttpEngine:
    """``HttpEngine`` on a clickhouse-connect client whose transport is chDB at ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    client = clickhouse_connect.get_client(interface="chdb", path=str(path.absolute()))
    return HttpEngine(client, f"clickhouse-connect+chdb://{path}")


def adapter(kind: str, path: Path) -> Engine:
    """The adapter of ``kind`` (one of :data:`KINDS`) on the chDB directory ``path``."""
    return ChdbEngine(path) if kind == "chdb" else connect_engine(path)
