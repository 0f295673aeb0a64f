"""One-line configuration errors that name the setting, where its value came from and why.

pydantic-settings merges flags, environment and TOML before validating, so its errors say only
"1 validation error for Settings" and a location. This module keeps what each source supplied
and turns an error into one line an operator can act on::

    files.workers (environment variable PYTHONHOSTED_FILES__WORKERS): input should be a valid
    integer, unable to parse string as an integer, got 'abc'

It also finds what pydantic-settings ignores: ``PYTHONHOSTED_*`` variables that name no setting
(a typo in an environment variable is otherwise silently a default), and JSON values that the
environment source would reject without saying which variable held them. Secret values are
never shown.
"""

from __future__ import annotations

import difflib
import json
import os
import stat
import tomllib
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError

from pythonhosted.errortext import without_credentials

MASK = "'**********'"
# A settings file is a few kilobytes; past this it is the wrong file (a log, a disk image, a
# device like /dev/zero, which was read until the machine ran out of memory).
TOML_MAX_BYTES = 2**20


class ConfigError(ValueError):
    """A configuration mistake, described in one line, with no URL's credentials in it (a
    store's or an edge's URL given with a password: the line goes to terminals and logs)."""

    def __init__(self, message: str) -> None:
        super().__init__(without_credentials(message))


@dataclass(frozen=True)
class Setting:
    """One setting of the model: its path (``("files", "workers")``) and its type."""

    path: tuple[str, ...]
    annotation: Any

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def secret(self) -> bool:
        return _mentions(self.annotation, SecretStr)

    @property
    def takes_json(self) -> bool:
        """Lists, tables and sections: what an environment variable must spell as JSON."""
        return _takes_json(self.annotation)


def _mentions(annotation: Any, target: type) -> bool:
    return annotation is target or any(_mentions(arg, target) for arg in get_args(annotation))


def _takes_json(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_takes_json(arg) for arg in get_args(annotation) if arg is not type(None))
    if origin in (list, dict, tuple, set, frozenset) or annotation in (list, dict):
        return True
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _section(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def settings_of(model: type[BaseModel]) -> Iterator[Setting]:
    """Every setting of ``model``: top-level fields, sections, and each section's fields."""
    for name, info in model.model_fields.items():
        yield Setting((name,), info.annotation)
        section = _section(info.annotation)
        if section is not None:
            for child in settings_of(section):
                yield Setting((name, *child.path), child.annotation)


def _find(model: type[BaseModel], loc: tuple[str | int, ...]) -> Setting | None:
    """The deepest known setting on ``loc`` (``camo.allow_networks`` for ``…allow_networks.0``)."""
    best = None
    for setting in settings_of(model):
        if loc[: len(setting.path)] == setting.path and (
            best is None or len(setting.path) > len(best.path)
        ):
            best = setting
    return best


def _closest(word: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(word, candidates, n=1)
    return close[0] if close else None


@dataclass(frozen=True)
class Environment:
    """The ``PREFIX*`` variables, read the way pydantic-settings reads them."""

    model: type[BaseModel]
    prefix: str
    delimiter: str
    environ: Mapping[str, str]
    other_names: frozenset[str] = frozenset()  # ours, but not settings (e.g. the TOML path)

    def variable(self, setting: Setting) -> str:
        return self.prefix + self.delimiter.join(setting.path).upper()

    def given(self) -> dict[tuple[str, ...], str]:
        """The settings the environment supplies (path -> variable name, as spelled)."""
        known = {self.variable(s): s.path for s in settings_of(self.model)}
        return {known[name.upper()]: name for name in self.environ if name.upper() in known}

    def check(self) -> None:
        """ConfigError for a variable that looks like a setting but names none, or for a
        list/table/section variable that is not JSON (the value pydantic-settings would
        reject naming only the section)."""
        settings = list(settings_of(self.model))
        known = {self.variable(s): s for s in settings}
        tables = [
            self.variable(s) + self.delimiter
            for s in settings
            if get_origin(s.annotation) is dict or s.annotation is dict
        ]
        for name, value in sorted(self.environ.items()):
            upper = name.upper()
            if not upper.startswith(self.prefix) or upper in self.other_names:
                continue
            setting = known.get(upper)
            if setting is not None:
                if setting.takes_json:
                    _check_json(setting, value, f"environment variable {name}")
                continue
            if any(upper.startswith(table) for table in tables):
                continue  # one key of a table, e.g. PYTHONHOSTED_CAMO__HEADERS__X_FRAME
            # Compared without the prefix, which every name shares.
            bare = upper.removeprefix(self.prefix)
            close = _closest(bare, [v.removeprefix(self.prefix) for v in known])
            if close is None:  # a field without its section: PYTHONHOSTED_PRIMARY
                close = next((v for v in known if v.endswith(self.delimiter + bare)), None)
                close = close and close.removeprefix(self.prefix)
            if close is not None or self.delimiter in bare:
                hint = f" (did you mean {self.prefix}{close}?)" if close else ""
                raise ConfigError(f"environment variable {name}: no such setting{hint}")


def _check_json(setting: Setting, value: str, origin: str) -> None:
    try:
        json.loads(value)
    except ValueError:
        shown = MASK if setting.secret else repr(value)
        raise ConfigError(
            f"{setting.name} ({origin}): expected JSON (a list or a table), got {shown}"
        ) from None


def read_toml(path: Path, named_by: str) -> dict[str, Any]:
    """The TOML file's tables; ConfigError naming the file for a missing or malformed one."""
    try:
        # Opened without blocking: opening a FIFO for reading waits for a writer, forever.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                # pydantic-settings reads the file again: a pipe would give it nothing.
                raise ConfigError(f"config file {path}: not a regular file")
            text = stream.read(TOML_MAX_BYTES + 1)
        if len(text) > TOML_MAX_BYTES:
            raise ConfigError(f"config file {path}: larger than {TOML_MAX_BYTES} bytes")
        return tomllib.loads(text.decode())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}{named_by}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def _holds(values: Mapping[str, Any], loc: tuple[str | int, ...]) -> bool:
    """Whether ``values`` supplies ``loc`` (or a plain value where ``loc`` goes deeper)."""
    node: Any = values
    for part in loc:
        in_table = isinstance(node, Mapping) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_table or in_list:
            node = node[part]
        else:
            return node is not values and not isinstance(node, Mapping | list)
    return True


@dataclass(frozen=True)
class Origins:
    """What each source supplied, in falling priority: flags, environment, TOML file."""

    flags: Mapping[str, Any] = field(default_factory=dict)
    flag_names: Mapping[str, str] = field(default_factory=dict)  # field name -> "--flag"
    env: Mapping[tuple[str, ...], str] = field(default_factory=dict)
    toml_path: Path | None = None
    toml: Mapping[str, Any] = field(default_factory=dict)

    def of(self, loc: tuple[str | int, ...]) -> str:
        if self.flags and _holds(self.flags, loc):
            name = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
            return f"flag {self.flag_names.get(name, '--' + name.replace('_', '-'))}"
        for length in range(len(loc), 0, -1):
            variable = self.env.get(tuple(str(p) for p in loc[:length]))
            if variable is not None:
                return f"environment variable {variable}"
        if self.toml_path is not None and _holds(self.toml, loc):
            keys = [str(p) for p in loc if isinstance(p, str)]
            key = f"[{keys[0]}] {'.'.join(keys[1:])}" if len(keys) > 1 else keys[0]
            return f"config file {self.toml_path}, key {key}"
        return "default"


def explain(
    exc: ValidationError, model: type[BaseModel], origins: Origins, base: tuple[str, ...] = ()
) -> ConfigError:
    """The first validation error as one line (and how many more there are).

    ``base`` is where ``model`` sits in the settings (``("camo",)`` for a section validated
    on its own), so the line names the setting in full.
    """
    errors = exc.errors()
    first = errors[0]
    loc: tuple[str | int, ...] = tuple(first["loc"])
    name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in (*base, *loc))
    name = name.lstrip(".")
    origin = origins.of(loc)
    if first["type"] == "extra_forbidden":
        parent = _find(model, loc[:-1]) if len(loc) > 1 else None
        section = _section(parent.annotation) if parent is not None else model
        fields = list(section.model_fields) if section is not None else []
        prefix = "".join(f"{p}." for p in (*base, *loc[:-1]))
        close = _closest(str(loc[-1]), fields)
        hint = f" (did you mean {prefix}{close}?)" if close else ""
        message = f"{name} ({origin}): no such setting{hint}"
    else:
        setting = _find(model, loc)
        shown = MASK if setting is not None and setting.secret else repr(first["input"])
        reason = first["msg"][:1].lower() + first["msg"][1:]
        message = f"{name or model.__name__} ({origin}): {reason}, got {shown}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return ConfigError(message)
