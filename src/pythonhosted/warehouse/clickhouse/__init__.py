"""ClickHouse as the warehouse: a server (``clickhouse://``) or chDB in process (``chdb://``).

- :mod:`.engines`: the two ways to reach it, one interface, the same SQL;
- :mod:`.tables`: the tables in ClickHouse types, from :mod:`pythonhosted.warehouse.schema`,
  and the rollups as materialized views into a ``SummingMergeTree`` (clickpy's design);
- :mod:`.load`: loading result files exactly once, by insert tokens;
- :mod:`.stats`: ``pythonhosted stats`` and the stats web's questions in ClickHouse's SQL;
- :mod:`.parquet`: Parquet export and import.
"""
