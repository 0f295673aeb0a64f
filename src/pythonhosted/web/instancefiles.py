"""Files one instance makes before its workers start, and each worker opens: what must hold
for the instance as a whole however many workers serve it (the purges every worker's cache
hears of, the stats web's request budgets per client).

The workers are started by granian from an import path, so the file's path reaches them in
an environment variable (an internal handoff, not a setting); the file lives in a private
temporary directory for as long as the instance runs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _variable(name: str) -> str:
    return f"_PYTHONHOSTED_{name.upper()}"


@contextmanager
def instance_file(name: str, create: Callable[[Path], object]) -> Iterator[Path]:
    """The file ``name``, made by ``create``, for the workers started inside the block (they
    find it with :func:`worker_file`); removed with its directory when the block ends."""
    with tempfile.TemporaryDirectory(prefix=f"pythonhosted-{name}-") as shared:
        path = Path(shared) / name
        create(path)
        os.environ[_variable(name)] = str(path)
        try:
            yield path
        finally:
            del os.environ[_variable(name)]


def worker_file(name: str) -> Path | None:
    """The instance's file ``name`` for this worker; None when it runs alone."""
    path = os.environ.get(_variable(name))
    return Path(path) if path else None
