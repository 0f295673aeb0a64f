"""Local directories a service writes to (data dir, spools), checked before it starts, and
the secrets the all-in-one keeps in its data dir.

A read-only or misnamed directory used to surface as a traceback from deep inside whichever
component touched it first, sometimes only at the first request. Each is now created and
probed with a real write at start-up, and a failure is one line naming the directory and the
setting that chose it.
"""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

from pythonhosted.smallfiles import read_small_file


class UnwritableDirectory(Exception):
    """A directory the process must write to but cannot, in one line for the operator."""


def ensure_writable(path: Path, setting: str) -> Path:
    """Create ``path`` if needed and prove a file can be written there; return it."""
    probe = path / f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UnwritableDirectory(f"cannot write to {path} ({setting}): {reason}") from None
    return path


def load_or_create_secret(path: Path) -> str:
    """The secret stored at ``path``, creating a random one (mode 0600) if there is none.

    What the all-in-one ``serve`` uses for secrets nobody configured, so its parts, and
    commands run later with the same data dir, agree on them. Creation is atomic (a temporary
    name, then a link), so processes starting at once agree on one secret.
    """
    existing = read_secret(path)
    if existing is not None:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process won the race: use its secret
    finally:
        temporary.unlink()
    found = read_secret(path)
    assert found is not None  # just written, by us or by the winner
    return found


# What this module writes is 65 bytes; a file past this is not a secret of ours.
SECRET_MAX_BYTES = 4096


def read_secret(path: Path) -> str | None:
    """The secret stored at ``path``; None if there is no such file; ValueError, naming the
    file, if it is empty, larger than :data:`SECRET_MAX_BYTES` or not text.

    Bounded: a multi-gigabyte file (or /dev/zero) there took all memory, a FIFO blocked the
    start for ever, and a non-UTF-8 one ended it with a codec error that named no file.
    """
    try:
        data = read_small_file(path, SECRET_MAX_BYTES, "secret file")
    except FileNotFoundError:
        return None
    try:
        secret = data.decode().strip()
    except UnicodeDecodeError:
        raise ValueError(f"secret file is not UTF-8 text: {path}") from None
    if not secret:
        raise ValueError(f"secret file is empty: {path}")
    return secret


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is another process still running on this host (the owner recorded in
    a spool segment's name or a warehouse's intent file): this process and pid 0 are not."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True
