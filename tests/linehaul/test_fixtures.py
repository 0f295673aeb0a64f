"""The reference's own YAML fixtures: exact rows, for every user agent and event case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pythonhosted.linehaul import UnprocessableLine, parse

DATA = Path("/work/shared/data/linehaul")
UNPROCESSABLE = "unprocessable"
LINE = (
    "download|Thu, 07 Jan 2021 20:54:54 GMT|US|/packages/aa/bb/foo-1.0.tar.gz|TLSv1.3|"
    "TLS_AES_128_GCM_SHA256|foo|1.0|sdist|{ua}"
)
ROW = {
    "timestamp": "2021-01-07 20:54:54 +00:00",
    "url": "/packages/aa/bb/foo-1.0.tar.gz",
    "project": "foo",
    "file": {"filename": "foo-1.0.tar.gz", "project": "foo", "version": "1.0", "type": "sdist"},
    "tls_protocol": "TLSv1.3",
    "tls_cipher": "TLS_AES_128_GCM_SHA256",
    "country_code": "US",
}
EMPTY = {
    "installer": {"name": None, "version": None, "subcommand": None},
    "python": None,
    "implementation": {"name": None, "version": None},
    "distro": {"name": None, "version": None, "id": None, "libc": {"lib": None, "version": None}},
    "system": {"name": None, "release": None},
    "cpu": None,
    "openssl_version": None,
    "setuptools_version": None,
    "rustc_version": None,
    "ci": None,
}


class _Loader(yaml.SafeLoader):
    """Safe YAML where bare numbers stay text (``version: 14.4`` is the string "14.4"), plus
    the fixtures' ``!!python/name:builtins.TypeError`` (an error case)."""


_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in _NUMBERS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda *_: UNPROCESSABLE)


def _load(path: Path) -> list[dict[str, Any]]:
    return yaml.load(path.read_text(), Loader=_Loader)


def _shape(template: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A fixture's sparse record in the full row shape (absent members null)."""
    out: dict[str, Any] = {}
    for key, member in template.items():
        value = given.get(key)
        if isinstance(member, dict):
            out[key] = None if value is None else _shape(member, value)
        else:
            assert value is None or isinstance(value, str | bool), (key, value)
            out[key] = value
    assert not set(given) - set(template), given
    return out


def _ua_cases() -> list[Any]:
    return [
        pytest.param(case["ua"], case["result"], id=f"{path.stem}-{index}")
        for path in sorted((DATA / "ua").glob("*.yml"))
        for index, case in enumerate(_load(path))
    ]


def _event_cases() -> list[Any]:
    return [
        pytest.param(case["event"], case["result"], id=f"event-{index}")
        for index, case in enumerate(_load(DATA / "events" / "download.yml"))
    ]


def _expected_row(result: dict[str, Any]) -> dict[str, Any]:
    day, month, year, time = result["timestamp"][5:-4].split()
    assert (day, month, year) == ("20", "Jul", "2018")
    row = {key: result[key] for key in ("url", "project", "file", "tls_protocol", "tls_cipher")}
    row["timestamp"] = f"2018-07-20 {time} +00:00"
    row["country_code"] = result["country_code"]
    row["details"] = None if result["details"] is None else _shape(EMPTY, result["details"])
    return row


@pytest.mark.parametrize(("ua", "result"), _ua_cases())
def test_user_agent_fixture(ua: str, result: dict[str, Any] | None, ref_row: Any) -> None:
    line = LINE.format(ua=ua)
    expected = None if result is None else {**ROW, "details": _shape(EMPTY, result)}
    assert parse(line) == expected
    assert ref_row(line) == expected  # the fixture is what the reference does, too


@pytest.mark.parametrize(("event", "result"), _event_cases())
def test_event_fixture(event: str, result: Any, ref_row: Any) -> None:
    if result == UNPROCESSABLE:
        with pytest.raises(UnprocessableLine):
            parse(event)
        with pytest.raises(Exception):  # noqa: B017 - cattrs wraps them in an ExceptionGroup
            ref_row(event)
        return
    expected = None if result is None else _expected_row(result)
    assert parse(event) == expected
    assert ref_row(event) == expected


def test_fixtures_are_all_found() -> None:
    assert len(_ua_cases()) == 33
    assert len(_event_cases()) == 8
