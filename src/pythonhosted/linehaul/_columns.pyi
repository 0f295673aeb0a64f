"""Types of the C block converter (``_columns.c``)."""

from collections.abc import Callable, Mapping

Fragments = Mapping[bytes, bytes | None]
CACHE_ENTRIES: int  # per field table
CACHE_BYTES: int  # per field table: keys and fragments

class Converter:
    def __init__(
        self,
        timestamp: Fragments,
        project: Fragments,
        version: Fragments,
        package_type: Fragments,
        simple_project: Fragments,
        tls_protocol: Fragments,
        tls_cipher: Fragments,
        country: Fragments,
        details: Fragments,
    ) -> None: ...
    def convert(
        self, block: bytes, fallback: Callable[[bytes], object], utf8: bool
    ) -> tuple[int, int, int, int, bytes | None]: ...
    def append(self, downloads: bytes, simple: bytes, unprocessed: bytes) -> None: ...
    def pending(self) -> int: ...
    def finish(self) -> tuple[bytes, bytes, bytes]: ...
    def cache_sizes(self) -> tuple[tuple[int, int], ...]: ...
