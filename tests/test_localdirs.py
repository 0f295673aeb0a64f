"""Local directories and the secrets serve generates into its data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from pythonhosted.localdirs import load_or_create_secret, read_secret


def test_a_secret_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "camo.key"
    secret = load_or_create_secret(path)
    assert len(secret) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(path) == secret == read_secret(path)
    assert [p.name for p in path.parent.iterdir()] == ["camo.key"]  # no temporary left


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "purge.key"
    path.write_text("\n")
    with pytest.raises(ValueError, match="secret file is empty"):
        load_or_create_secret(path)
