"""One settings object for every service.

Values come, in rising priority, from defaults, an optional TOML file, environment variables
(``PYTHONHOSTED_*``, nested sections joined with ``__``, e.g. ``PYTHONHOSTED_FILES__PRIMARY``)
and finally command-line flags, which the CLI passes as overrides. Secrets are ``SecretStr`` so
they never show up in a repr or a log line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "PYTHONHOSTED_CONFIG"


class FilesSettings(BaseModel):
    """The files edge (files.pythonhosted.org)."""

    primary: str = ""
    archive: str | None = None
    logs: str | None = None
    bind: str = "127.0.0.1:8000"
    workers: int = 1
    admin_secret: SecretStr | None = None
    purge_secret: SecretStr | None = None
    require_tls: bool = False
    trust_proxy_headers: bool = False
    country_header: str | None = None
    primary_connect_timeout: float = 2.0
    primary_read_timeout: float = 2.0
    archive_connect_timeout: float = 5.0
    archive_read_timeout: float = 10.0
    log_period: float = 120.0
    log_batch_lines: int = 100_000
    log_compress_level: int = 9
    log_spool_dir: Path | None = None
    log_spool_sync_interval: float = 1.0
    cache_dir: Path | None = None
    cache_max_bytes: int = 1 << 30


class Settings(BaseSettings):
    """Everything configurable, one section per service."""

    model_config = SettingsConfigDict(
        env_prefix="PYTHONHOSTED_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path("var")
    log_json: bool = False
    log_level: str = "INFO"
    files: FilesSettings = FilesSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get(CONFIG_ENV)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_file)))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; ``config_file`` (or ``$PYTHONHOSTED_CONFIG``) names a TOML file.

    ``overrides`` are nested dicts of values given on the command line; ``None`` values are
    dropped so an absent flag never hides the environment or the file.
    """
    if config_file is not None:
        if not config_file.is_file():
            raise FileNotFoundError(f"config file not found: {config_file}")
        os.environ[CONFIG_ENV] = str(config_file)
    return Settings(**_drop_none(overrides))


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if value:
                cleaned[key] = value
        elif value is not None:
            cleaned[key] = value
    return cleaned
