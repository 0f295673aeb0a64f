"""One settings object for every service.

Values come, in rising priority, from defaults, an optional TOML file, environment variables
(``PYTHONHOSTED_*``, nested sections joined with ``__``, e.g. ``PYTHONHOSTED_FILES__PRIMARY``)
and finally command-line flags, which the CLI passes as overrides. Secrets are ``SecretStr`` so
they never show up in a repr or a log line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "PYTHONHOSTED_CONFIG"


class FilesSettings(BaseModel):
    """The files edge (files.pythonhosted.org)."""

    model_config = ConfigDict(extra="forbid")

    primary: str = ""
    archive: str | None = None
    logs: str | None = None
    bind: str = "127.0.0.1:8000"
    workers: int = Field(default=1, ge=1)
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
    cache_max_bytes: int = 128 * 2**20
    cache_object_max_bytes: int = 16 * 2**20


class IndexSettings(BaseModel):
    """The simple repository API; it reads the catalog in ``files.primary`` and logs to
    ``files.logs`` (with the files edge's batching settings)."""

    model_config = ConfigDict(extra="forbid")

    bind: str = "127.0.0.1:8003"
    files_url: str | None = None
    cache_ttl: float = Field(default=60.0, ge=0)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> object:
    """Go-style durations (``4s``, ``1m30s``, ``500ms``) to seconds, as go-camo's flags take them.

    Plain numbers pass through as seconds; anything else is left for pydantic to reject.
    """
    if not isinstance(value, str) or not value.strip():
        return value
    text = value.strip()
    if _DURATION.sub("", text) != "":
        return text
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION.findall(text))


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]

CAMO_KEY_ENV = "PYTHONHOSTED_CAMO_KEY"


class CamoSettings(BaseModel):
    """The image proxy (camo): go-camo's options, plus the networks tests may allow."""

    key: SecretStr | None = None
    key_file: Path | None = None
    bind: str = "127.0.0.1:8002"
    workers: int = Field(default=1, ge=1)
    max_size_kb: int = Field(default=5120, gt=0)
    timeout: Seconds = 4.0
    max_redirects: int = Field(default=3, ge=0)
    allow_video: bool = False
    allow_audio: bool = False
    allow_credential_urls: bool = False
    headers: dict[str, str] = {}
    server_name: str = "pythonhosted-camo"
    user_agent: str = "pythonhosted-camo"
    filter_ruleset: Path | None = None
    allow_networks: list[IPvAnyNetwork] = []

    @model_validator(mode="before")
    @classmethod
    def _issue_key_name(cls, data: Any) -> Any:
        """Accept ``$PYTHONHOSTED_CAMO_KEY`` (the name operators know) when nothing else is set."""
        if isinstance(data, dict) and data.get("key") is None and data.get("key_file") is None:
            env_key = os.environ.get(CAMO_KEY_ENV)
            if env_key:
                return {**data, "key": env_key}
        return data

    def hmac_key(self) -> bytes:
        """The signing key: ``key`` or else the stripped contents of ``key_file``."""
        if self.key is not None and self.key.get_secret_value():
            return self.key.get_secret_value().encode()
        if self.key_file is not None:
            key = self.key_file.read_bytes().strip()
            if key:
                return key
            raise ValueError(f"camo key file is empty: {self.key_file}")
        raise ValueError(
            f"no camo key: set {CAMO_KEY_ENV} (or PYTHONHOSTED_CAMO__KEY) or camo.key_file"
        )


class ConveyorSettings(BaseModel):
    """Conveyor: legacy ``/packages/{py}/{l}/{name}/{file}`` redirects and docs hosting."""

    docs: str = ""
    bind: str = "127.0.0.1:8001"
    workers: int = Field(default=1, ge=1)
    json_api: str | None = None
    index: str | None = None
    files_base_url: str = ""
    cache_entries: int = Field(default=10_000, ge=0)
    cache_ttl: Seconds = 10.0
    upstream_timeout: Seconds = 5.0
    redirects_reload_interval: Seconds = 600.0
    store_connect_timeout: Seconds = 2.0
    store_read_timeout: Seconds = 10.0
    trust_proxy_headers: bool = False


class LinehaulSettings(BaseModel):
    """Linehaul's ingest and publish workers; empty store URLs mean embedded defaults under
    the data dir (logs: the files edge's log store, else ``file://{data_dir}/logs``)."""

    logs: str | None = None
    results: str | None = None
    warehouse: str | None = None
    bind: str = "127.0.0.1:8004"
    lease_timeout: Seconds = 300.0
    ingest_interval: Seconds = 60.0
    publish_interval: Seconds = 900.0
    publish_batch_files: int = Field(default=1000, gt=0)
    max_line_length: int = Field(default=64 * 1024, ge=1024)


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
    index: IndexSettings = IndexSettings()
    # A factory, not a shared default instance, so $PYTHONHOSTED_CAMO_KEY is read per load.
    camo: CamoSettings = Field(default_factory=CamoSettings)
    linehaul: LinehaulSettings = Field(default_factory=LinehaulSettings)
    conveyor: ConveyorSettings = Field(default_factory=ConveyorSettings)

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


def export_to_environment(settings: Settings, section: str, names: Iterable[str]) -> None:
    """Put settings of one section, and the logging format, into ``PYTHONHOSTED_*`` variables.

    Worker processes rebuild their settings with ``load_settings()``; this is how the values a
    parent took from its command-line flags reach them. Lists and tables travel as JSON (which
    pydantic-settings parses back). Secrets are never flags, so none are exported.
    """
    values = getattr(settings, section).model_dump(mode="json", include=set(names))
    for name, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        os.environ[f"PYTHONHOSTED_{section.upper()}__{name.upper()}"] = text
    os.environ["PYTHONHOSTED_LOG_JSON"] = json.dumps(settings.log_json)
