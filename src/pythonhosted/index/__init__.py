"""The simple repository API (PEP 503, 691, 658/714, 700) over the catalog of uploads."""
