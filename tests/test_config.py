"""Settings precedence: flags over environment over TOML file over defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.config import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONHOSTED_CONFIG", raising=False)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.files.bind == "127.0.0.1:8000"
    assert settings.files.log_period == 120.0
    assert settings.files.admin_secret is None


def test_toml_env_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "ph.toml"
    toml.write_text(
        'log_json = true\n[files]\nprimary = "file:///a"\nbind = "0.0.0.0:9000"\nlog_period = 3\n'
    )
    monkeypatch.setenv("PYTHONHOSTED_FILES__BIND", "127.0.0.1:9100")
    settings = load_settings(toml, files={"log_period": 5, "archive": None})
    assert settings.log_json is True
    assert settings.files.primary == "file:///a"  # from the file
    assert settings.files.bind == "127.0.0.1:9100"  # env beats file
    assert settings.files.log_period == 5  # flag beats file
    assert settings.files.archive is None


def test_secret_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHOSTED_FILES__ADMIN_SECRET", "hunter2")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert json.loads(result.output)["files"]["admin_secret"] == "**********"


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "ph.toml"
    toml.write_text("[files]\nprimray = 'file:///typo'\n")
    result = CliRunner().invoke(main, ["--config", str(toml), "config"])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: files.primray (config file {toml}, key [files] primray): no such setting "
        "(did you mean files.primary?)\n"
    )


def test_missing_config_file_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.toml"), "config"])
    assert result.exit_code == 2
    assert result.output == f"Error: config file not found: {tmp_path / 'nope.toml'}\n"
