"""One settings object for every service.

Values come, in rising priority, from defaults, an optional TOML file, environment variables
(``PYTHONHOSTED_*``, nested sections joined with ``__``, e.g. ``PYTHONHOSTED_FILES__PRIMARY``)
and finally command-line flags, which the CLI passes as overrides. Secrets are ``SecretStr`` so
they never show up in a repr or a log line.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pythonhosted.logsetup import LOG_JSON_ENV, error_line, json_wanted
from pythonhosted.settings_errors import ConfigError, Environment, Origins, explain, read_toml
from pythonhosted.smallfiles import read_small_file

ENV_PREFIX = "PYTHONHOSTED_"
CONFIG_ENV = "PYTHONHOSTED_CONFIG"
# Counts and sizes go to C (socket backlogs, allocators, DuckDB): past a signed 64-bit value they
# overflow there, after the banner printed, instead of being refused here.
MAX_INTEGER = 2**63 - 1
# Durations go to timers (threading's waits overflow past ~292 years); a year is a mistake already.
MAX_SECONDS = 366 * 86400.0
# Worker processes per service: past this a mistyped number (an extra zero or two) would
# fork until the machine runs out of file descriptors or memory, after the banner printed.
MAX_WORKERS = 256


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


def refuse_empty_path(value: object) -> object:
    """An empty path is a variable left unset in a script (``--data-dir "$DATA"``), not "the
    working directory", which pydantic would make of it: data, keys and caches written
    wherever the command happened to start."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty (leave the setting out for its default)")
    return value


SomePath = Annotated[Path, BeforeValidator(refuse_empty_path)]
Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=MAX_SECONDS)]
SecondsOrZero = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, le=MAX_SECONDS)]


def _control_character(value: object) -> str | None:
    """The first control character (a newline from an env file, a NUL) in any text of ``value``."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str | Path):
        found = re.search(r"[\x00-\x1f\x7f]", str(value))
        return repr(found[0]) if found else None
    if isinstance(value, Mapping):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        return next(filter(None, map(_control_character, value)), None)
    return None


def check_value(value: object) -> object:
    """Refuse what no setting means: text with control characters (a header, an address or a
    path cut at a newline) and integers C cannot hold. Infinity and NaN are refused by
    ``allow_inf_nan=False``."""
    character = _control_character(value)
    if character is not None:
        raise ValueError(f"must not contain control characters, found {character}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise ValueError(f"must be at most {MAX_INTEGER}")
    return value


class Section(BaseModel):
    """Every settings section: unknown keys, non-finite numbers and :func:`check_value`'s
    mistakes are refused, each in one line naming the setting and its source."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _sane(cls, value: object) -> object:
        return check_value(value)


class HttpSettings(Section):
    """What every HTTP server of ours is held to (see :mod:`pythonhosted.web.listener`)."""

    max_connections: int = Field(default=16384, ge=1)
    header_timeout: Seconds = 10.0
    backlog: int = Field(default=4096, ge=16, le=2**31 - 1)  # listen() takes a C int
    drain_timeout: float = Field(default=20.0, gt=0, le=86400)
    send_timeout: float = Field(default=60.0, ge=0, le=86400)  # 0: the kernel's own limits
    access_log: bool = False


class FilesSettings(Section):
    """The files edge (files.pythonhosted.org)."""

    primary: str = ""
    archive: str | None = None
    logs: str | None = None
    bind: str = "127.0.0.1:8000"
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    admin_secret: SecretStr | None = None
    purge_secret: SecretStr | None = None
    purge_urls: list[str] | None = None  # None: the edge at `bind`
    require_tls: bool = False
    trust_proxy_headers: bool = False
    country_header: str | None = None
    primary_connect_timeout: Seconds = 2.0
    primary_read_timeout: Seconds = 2.0
    archive_connect_timeout: Seconds = 5.0
    archive_read_timeout: Seconds = 10.0
    log_period: Seconds = 120.0
    log_batch_lines: int = Field(default=100_000, ge=1)
    log_compress_level: int = Field(default=9, ge=0, le=9)
    log_spool_dir: SomePath | None = None
    log_spool_sync_interval: Seconds = 1.0
    cache_entries: int = Field(default=20_000, ge=0)
    cache_max_bytes: int = Field(default=128 * 2**20, ge=0)
    cache_object_max_bytes: int = Field(default=16 * 2**20, ge=0)
    upload_max_bytes: int = Field(default=4 * 2**30, gt=0)
    upload_metadata_max_bytes: int = Field(default=2**20, gt=0)

    @field_validator("purge_urls")
    @classmethod
    def _edges(cls, value: list[str] | None) -> list[str] | None:
        """Each an edge's base URL. No credentials in it: the purge secret authenticates, and
        a URL's password would be shown in every failed purge's message and in the log."""
        for url in value or ():
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 (a bad port raises here, not at the first purge)
            except ValueError as exc:
                raise ValueError(f"{url!r} is not a URL: {exc}") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL of an edge")
            if parts.username is not None or parts.password is not None:
                raise ValueError(
                    "an edge's URL takes no credentials (files.purge_secret authenticates): "
                    + parts._replace(netloc=f"***@{parts.netloc.rpartition('@')[2]}").geturl()
                )
            if parts.query or parts.fragment:
                raise ValueError(f"{url!r}: an edge's URL takes no query or fragment")
        return value


class IndexSettings(Section):
    """The simple repository API; it reads the catalog in ``files.primary`` and logs to
    ``files.logs`` (with the files edge's batching settings)."""

    bind: str = "127.0.0.1:8003"
    files_url: str | None = None
    cache_ttl: float = Field(default=60.0, ge=0)
    # A 100,000-file project: ~135 MB of records, ~75 MB of renderings (README).
    cache_max_bytes: int = Field(default=256 * 2**20, ge=0)


CAMO_KEY_ENV = "PYTHONHOSTED_CAMO_KEY"


class CamoSettings(Section):
    """The image proxy (camo): go-camo's options, plus the networks tests may allow."""

    key: SecretStr | None = None
    key_file: SomePath | None = None
    bind: str = "127.0.0.1:8002"
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    max_size_kb: int = Field(default=5120, ge=0)  # 0: no limit, as in go-camo
    max_size_redirect: str | None = None  # an http(s) URL, or "original" for the image's own
    timeout: Seconds = 4.0
    max_redirects: int = Field(default=3, ge=0)
    idle_timeout: Seconds = 30.0
    read_timeout: Seconds = 30.0
    allow_video: bool = False
    allow_audio: bool = False
    allow_credential_urls: bool = False
    enable_xfwd4: bool = False
    disable_keepalives_frontend: bool = False
    disable_keepalives_backend: bool = False
    headers: dict[str, str] = {}
    server_name: str = "pythonhosted-camo"
    expose_server_version: bool = False
    user_agent: str = "pythonhosted-camo"
    filter_ruleset: SomePath | None = None
    metrics: bool = True
    allow_networks: list[IPvAnyNetwork] = []
    # the cache in front: on when cache_dir is set and cache_max_bytes > 0
    cache_dir: SomePath | None = None
    cache_max_bytes: int = Field(default=2**30, ge=0)
    cache_memory_bytes: int = Field(default=64 * 2**20, ge=0)
    cache_memory_object_bytes: int = Field(default=256 * 2**10, ge=0)
    cache_object_max_bytes: int = Field(default=5 * 2**20, gt=0)
    cache_default_ttl: SecondsOrZero = 3600.0
    cache_max_ttl: SecondsOrZero = 7 * 86400.0
    cache_stale_if_error: SecondsOrZero = 3600.0
    cache_purge_secret: SecretStr | None = None

    @field_validator("max_size_redirect")
    @classmethod
    def _redirect_target(cls, value: str | None) -> str | None:
        if value is None or value == "original":
            return value
        if not re.fullmatch(r"https?://[^\s]+", value):
            raise ValueError(f"max_size_redirect must be an http(s) URL or 'original': {value!r}")
        return value

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
            key = _read_key_file(self.key_file).strip()
            if key:
                return key
            raise ValueError(f"camo key file is empty: {self.key_file}")
        raise ValueError(
            f"no camo key: set {CAMO_KEY_ENV} (or PYTHONHOSTED_CAMO__KEY) or camo.key_file"
        )


# A key is a few dozen bytes: a file over this is not one (/dev/zero, a disk image).
KEY_FILE_MAX_BYTES = 64 << 10


def _read_key_file(path: Path) -> bytes:
    """The key file's bytes, at most :data:`KEY_FILE_MAX_BYTES` of them (a FIFO is read as
    a pipe, a huge file or /dev/zero refused: :mod:`pythonhosted.smallfiles`)."""
    return read_small_file(path, KEY_FILE_MAX_BYTES, "camo key file")


class ConveyorSettings(Section):
    """Conveyor: legacy ``/packages/{py}/{l}/{name}/{file}`` redirects and docs hosting."""

    docs: str = ""
    bind: str = "127.0.0.1:8001"
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    json_api: str | None = None
    index: str | None = None
    files_base_url: str = ""
    cache_entries: int = Field(default=10_000, ge=0)
    cache_max_bytes: int = Field(default=128 * 2**20, ge=0)
    cache_ttl: Seconds = 10.0
    upstream_timeout: Seconds = 5.0
    upstream_max_bytes: int = Field(default=128 * 2**20, gt=0)
    upstream_connections: int = Field(default=64, ge=1, le=1024)
    redirects_reload_interval: Seconds = 2.0
    # ~1,000,000 lines of ~128 bytes; ~250 bytes of memory per entry held (README).
    redirects_max_bytes: int = Field(default=128 * 2**20, gt=0)
    store_connect_timeout: Seconds = 2.0
    store_read_timeout: Seconds = 10.0
    trust_proxy_headers: bool = False
    upload_max_file_bytes: int = Field(default=128 * 2**20, gt=0)
    upload_max_total_bytes: int = Field(default=2**30, gt=0)
    upload_max_files: int = Field(default=100_000, gt=0)
    upload_max_ratio: float = Field(default=100.0, ge=1)
    # A replaced docs site stays readable this long (requests that followed the old pointer);
    # a site folder no pointer ever named (a killed upload's) is removed this long after it was
    # started (an upload may still be writing it). Both removed by the next upload.
    docs_keep_replaced: SecondsOrZero = 600.0
    docs_keep_unfinished: SecondsOrZero = 24 * 3600.0


class LinehaulSettings(Section):
    """Linehaul's ingest and publish workers; empty store URLs mean embedded defaults under
    the data dir (logs: the files edge's log store, else ``file://{data_dir}/logs``)."""

    logs: str | None = None
    results: str | None = None
    warehouse: str | None = None
    bind: str = "127.0.0.1:8004"
    lease_timeout: Seconds = 300.0
    ingest_interval: Seconds = 60.0
    ingest_concurrency: int = Field(default=8, ge=1)
    publish_interval: Seconds = 900.0
    publish_batch_files: int = Field(default=1000, gt=0)
    max_line_length: int = Field(default=64 * 1024, ge=1024)


_SIZE_UNITS = {
    "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}  # fmt: skip


class DuckDBSettings(Section):
    """The embedded DuckDB engine of every process that opens a DuckDB warehouse (publish,
    ``stats``, the stats web, ``serve``).

    DuckDB's own default lets its buffers take 80 % of the machine's memory: a rollup rebuild
    of 20M rows over 500,000 projects reached 12 GB, beside every other service of ``serve``.
    Past the limit DuckDB spills to ``temp_directory`` (default: beside the file, ``NAME.tmp``).
    """

    memory_limit: str = "50%"
    temp_directory: SomePath | None = None

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, value: str) -> str:
        """DuckDB's own size syntax ("4GB", "512MiB") or a share of the machine's memory;
        below 64 MB DuckDB cannot even run its own statements."""
        found = re.fullmatch(r"(\d{1,12}(?:\.\d{1,3})?) ?([KMGT]?i?B|%)", value.strip())
        number = float(found[1]) if found else 0.0
        if found and found[2] == "%" and 0 < number <= 100:
            return found[0]
        if found and number * _SIZE_UNITS.get(found[2], 0) >= 64 * 10**6:
            return found[0]
        raise ValueError(
            "must be a size of at least 64MB, like 4GB, or a share of memory, like 25%"
        )


# Cold stats-web answers admitted at once, per worker: past a few thousand (at ~0.1 s of CPU
# each, minutes of queue) an answer comes after its client gave up; 2**64 was accepted and
# meant no shedding at all.
MAX_PENDING = 4096


class StatsWebSettings(Section):
    """The stats web (dashboard, JSON API, badges) over the warehouse (docs/stats-web.md)."""

    warehouse: str | None = None  # default: linehaul.warehouse, else the data dir's DuckDB file
    bind: str = "127.0.0.1:8005"
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    rate_limit: int = Field(default=300, ge=0)  # requests per window per client; 0: no limit
    rate_window: Seconds = 60.0
    rate_limit_loopback: bool = False
    trust_proxy_headers: bool = False
    max_age: Seconds = 900.0
    cache_entries: int = Field(default=20_000, ge=0)
    cache_bytes: int = Field(default=64 * 2**20, ge=0)
    part_cache_bytes: int = Field(default=32 * 2**20, ge=0)  # answers' settled parts; 0: none
    read_wait: Seconds = 10.0
    trending_floor: int = Field(default=100, ge=0)
    max_pending: int = Field(default=16, ge=1, le=MAX_PENDING)  # computing at once; then 503
    prewarm_projects: int = Field(default=50, ge=0)  # answers made after a publish; 0: none
    prewarm_seconds: Seconds = 60.0  # the most time a pre-warm round takes
    # The UTC day counted as today; default: the clock's. Within what day arithmetic (a year
    # back, a year on) cannot overflow.
    today: date | None = Field(default=None, ge=date(1970, 1, 1), le=date(9000, 1, 1))


class Settings(BaseSettings):
    """Everything configurable, one section per service."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: SomePath = Path("var")
    log_json: bool = False
    log_level: str = "INFO"
    http: HttpSettings = HttpSettings()
    files: FilesSettings = FilesSettings()
    index: IndexSettings = IndexSettings()
    # A factory, not a shared default instance, so $PYTHONHOSTED_CAMO_KEY is read per load.
    camo: CamoSettings = Field(default_factory=CamoSettings)
    linehaul: LinehaulSettings = Field(default_factory=LinehaulSettings)
    conveyor: ConveyorSettings = Field(default_factory=ConveyorSettings)
    stats_web: StatsWebSettings = Field(default_factory=StatsWebSettings)
    duckdb: DuckDBSettings = DuckDBSettings()

    @field_validator("data_dir")
    @classmethod
    def _sane(cls, value: Path) -> Path:
        check_value(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        """A level :mod:`logging` knows, checked here rather than failing in ``setLevel``."""
        if value.upper() not in logging.getLevelNamesMapping():
            names = ", ".join(sorted(logging.getLevelNamesMapping()))
            raise ValueError(f"must be one of {names}")
        return value

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


# Variables of ours that are not settings: the TOML path, camo's key by the name go-camo's
# operators know, and the directory where ``--workers`` processes meet their metrics.
OTHER_VARIABLES = frozenset({CONFIG_ENV, CAMO_KEY_ENV, "PYTHONHOSTED_WORKER_METRICS_DIR"})


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; ``config_file`` (or ``$PYTHONHOSTED_CONFIG``) names a TOML file.

    ``overrides`` are nested dicts of values given on the command line; ``None`` values are
    dropped so an absent flag never hides the environment or the file. Every mistake (a bad
    value, an unknown key or ``PYTHONHOSTED_*`` variable, a malformed or missing file) is a
    ConfigError whose one line names the setting and where it came from.
    """
    if config_file is not None:
        os.environ[CONFIG_ENV] = str(config_file)
    toml_file = os.environ.get(CONFIG_ENV)
    toml_path = Path(toml_file) if toml_file else None
    toml: dict[str, Any] = {}
    if toml_path is not None:
        named_by = "" if config_file is not None else f" (from {CONFIG_ENV})"
        toml = read_toml(toml_path, named_by)
    environment = Environment(Settings, ENV_PREFIX, "__", os.environ, OTHER_VARIABLES)
    environment.check()
    flags = _drop_none(overrides)
    try:
        return Settings(**flags)
    except ValidationError as exc:
        origins = Origins(flags=flags, env=environment.given(), toml_path=toml_path, toml=toml)
        raise explain(exc, Settings, origins) from None


def load_worker_settings() -> Settings:
    """:func:`load_settings` for a ``--workers`` process: a mistake is one line on stderr and
    exit status 2, not a traceback from inside the server's process pool."""
    try:
        return load_settings()
    except ConfigError as exc:
        error_line(str(exc), json=json_wanted())
        raise SystemExit(2) from None


def with_flags(
    settings: Settings,
    section: str,
    flags: Mapping[str, Any],
    flag_names: Mapping[str, str] | None = None,
) -> Settings:
    """``settings`` with one section's command-line flags applied and validated.

    ``flags`` are the values given (absent flags left out by the caller); ``flag_names`` maps
    field names to the flags that set them (default ``--field-name``). A bad value is a
    ConfigError naming the flag. What was set stays told apart from what was left at its
    default (``model_fields_set``): a whole dump re-validated counted every field as set,
    and camo took go-camo's 30 s frontend timeouts, given by no one, for its head deadline
    instead of ``http.header_timeout`` (10 s).
    """
    model = type(getattr(settings, section))
    given = getattr(settings, section).model_dump(exclude_unset=True)
    try:
        validated = model.model_validate({**given, **flags})
    except ValidationError as exc:
        origins = Origins(flags=flags, flag_names=flag_names or {})
        raise explain(exc, model, origins, base=(section,)) from None
    return settings.model_copy(update={section: validated})


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
    os.environ[LOG_JSON_ENV] = json.dumps(settings.log_json)
