"""The all-in-one server's camo key: generated once, kept in the data dir, reused after."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def load_or_create_key(path: Path) -> bytes:
    """The key stored at ``path``, creating a random one (mode 0600) if there is none.

    Creation is atomic (write to a temporary name, then link), so two processes starting at
    once agree on one key instead of each keeping its own.
    """
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        pass
    else:
        if key:
            return key
        raise ValueError(f"camo key file is empty: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_hex(32).encode() + b"\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process won the race: use its key
    finally:
        temporary.unlink()
    return path.read_bytes().strip()
