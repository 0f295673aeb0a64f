"""Types of the C block converter (``_columns.c``)."""

from collections.abc import Mapping

Fragments = Mapping[bytes, bytes | None]

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
    def convert(self, block: bytes) -> tuple[int, int, bytes | None] | None: ...
    def append(self, downloads: bytes, simple: bytes) -> None: ...
    def finish(self) -> tuple[bytes, bytes]: ...
