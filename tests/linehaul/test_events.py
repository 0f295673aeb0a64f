"""Line-level rules: the spec's fixes, the writer's lines, whitespace, timestamps, rows."""

from __future__ import annotations

import pickle
from typing import Any

import orjson
import pytest

from pythonhosted.linehaul import UnprocessableLine, parse
from pythonhosted.logline import download_line, simple_line
from pythonhosted.warehouse.schema import FILE_DOWNLOADS, SIMPLE_REQUESTS, Field

TS = 1610052894.0  # Thu, 07 Jan 2021 20:54:54 GMT
HEAD = "download|Thu, 07 Jan 2021 20:54:54 GMT|US|/packages/a/b/c/foo-1.0.tar.gz"


def _line(tls: str = "TLSv1.3|X", project: str = "foo|1.0|sdist", ua: str = "pip/24.0 {}") -> str:
    return f"{HEAD}|{tls}|{project}|{ua}"


def test_empty_tls_fields_are_null_where_the_reference_rejects(ref_row: Any) -> None:
    row = parse(_line(tls="|"))
    assert row is not None
    assert (row["tls_protocol"], row["tls_cipher"]) == (None, None)
    with pytest.raises(Exception):  # noqa: B017 - pyparsing's ParseException
        ref_row(_line(tls="|"))
    assert row == ref_row(_line(tls="(null)|(null)"))


@pytest.mark.parametrize(
    "line",
    [
        "2@Thu, 07 Jan 2021 20:54:54 GMT|US|/packages/x.tar.gz|TLSv1.2|X|foo|1.0|sdist|ua",
        "Thu, 07 Jan 2021 20:54:54 GMT|US|/packages/x.tar.gz|foo|1.0|sdist|ua|b|c|d",
    ],
)
def test_legacy_formats_are_unprocessable(line: str, ref_row: Any) -> None:
    with pytest.raises(UnprocessableLine):
        parse(line)
    with pytest.raises(Exception):  # noqa: B017 - its grammar reads them, but no row comes out
        ref_row(line)


def test_the_writers_lines_round_trip() -> None:
    line = download_line(
        timestamp=TS,
        country=None,
        url="/packages/a|b/foo\n-1.0.tar.gz",
        tls_protocol=None,
        tls_cipher="",
        project="fo@o",
        version="1.0",
        package_type="sdist",
        user_agent="curl/8.0 |pipe|",
    )
    row = parse(line)
    assert row is not None
    # Not percent-decoded (docs/linehaul.md): the url keeps the writer's escapes.
    assert row["url"] == "/packages/a%7Cb/foo%0A-1.0.tar.gz"
    assert row["file"] == {
        "filename": "foo%0A-1.0.tar.gz",
        "project": "fo@o",
        "version": "1.0",
        "type": "sdist",
    }
    assert (row["country_code"], row["tls_protocol"], row["tls_cipher"]) == (None, None, None)
    assert row["details"]["installer"]["name"] == "Browser"
    simple = parse(
        simple_line(
            timestamp=TS,
            country="DE",
            url="/simple/ünï/",
            tls_protocol="TLSv1.3",
            tls_cipher="X",
            user_agent=None,
        )
    )
    assert simple is None  # the writer's "(null)" agent is on the ignore list


def test_percent_escapes_are_kept_as_the_reference_keeps_them(ref_row: Any) -> None:
    line = _line(project="foo%7Cbar|1.0|sdist").replace("foo-1.0", "foo%7Cbar-1.0")
    assert parse(line) == ref_row(line)
    assert parse(line)["project"] == "foo%7Cbar"  # type: ignore[index]


@pytest.mark.parametrize(
    "line",
    [
        " " + _line(),
        _line().replace("|US|", "| US  |"),
        _line().replace("|US|", "|\tUS\t|"),
        _line(tls="(null) |  (null)"),
        _line(project="foo | 1.0 |  sdist "),
        _line().replace("|US|", "|US\r |"),
        _line().replace("|US|", "|US\n|"),
        _line() + "\r\n",
        _line() + "\n \n",
        _line().replace("GMT", "UTC").replace("Thu", "Fri"),
        _line().replace("Thu, 07", "Thu,  7"),
    ],
)
def test_blanks_and_timestamps_read_as_the_reference_reads_them(line: str, ref_row: Any) -> None:
    assert parse(line) == ref_row(line)


@pytest.mark.parametrize(
    "line",
    [
        _line().replace("|US|", "|U\x00S|"),
        _line().replace("|US|", "|U\rS|"),
        _line() + "\nmore",
        _line().replace("Thu, 07 Jan", "Thu, 32 Jan"),
        _line().replace("Thu, 07 Jan 2021 20:54:54 GMT", ""),
        _line(project="foo|1.0|wheel"),
        _line(project="(null)|1.0|sdist"),
        _line(project="foo||sdist"),
        "simple|Thu, 07 Jan 2021 20:54:54 GMT|US|/simple|a|b||||ua",
        "simple|Thu, 07 Jan 2021 20:54:54 GMT|US|/simple/foo/|a|b|foo|||ua",
        "upload|Thu, 07 Jan 2021 20:54:54 GMT|US|/x/y|a|b|foo|1.0|sdist|ua",
        "download|too|few|fields",
        "",
    ],
)
def test_unprocessable_lines(line: str, ref_row: Any) -> None:
    with pytest.raises(UnprocessableLine):
        parse(line)
    with pytest.raises(Exception):  # noqa: B017 - the reference raises all sorts
        ref_row(line)


def test_details_are_shared_read_only_records() -> None:
    first, second = parse(_line()), parse(_line())
    assert first is not None and second is not None
    assert first["details"] is second["details"]
    with pytest.raises(TypeError):
        first["details"]["python"] = "3.12"
    with pytest.raises(TypeError):
        first["details"].update(python="3.12")
    assert pickle.loads(pickle.dumps(first)) == first
    assert orjson.loads(orjson.dumps(first)) == first
    first["project"] = "changed"  # the rest of a row is the caller's
    assert second["project"] == "foo"


def _conforms(fields: tuple[Field, ...], value: dict[str, Any]) -> None:
    assert list(value) != [] and set(value) == {field.name for field in fields}
    kinds = {"STRING": str, "TIMESTAMP": str, "BOOLEAN": bool, "RECORD": dict}
    for field in fields:
        member = value[field.name]
        if member is None:
            assert field.mode == "NULLABLE" and not field.in_every_row, field.name
            continue
        assert isinstance(member, kinds[field.type]), field.name
        if field.type == "RECORD":
            _conforms(field.fields, member)


def test_rows_conform_to_the_schema() -> None:
    ua = (
        'uv/0.4.0 {"installer":{"name":"uv","subcommand":["pip","install"]},"ci":true,'
        '"distro":{"libc":{}}}'
    )
    download = parse(_line(ua=ua))
    simple = parse("simple|Thu, 07 Jan 2021 20:54:54 GMT||/simple/foo/|(null)|(null)||||curl/1")
    assert download is not None and simple is not None
    _conforms(FILE_DOWNLOADS, download)
    _conforms(SIMPLE_REQUESTS, simple)
    assert download["details"]["installer"]["subcommand"] == "pip install"
    assert download["timestamp"] == simple["timestamp"] == "2021-01-07 20:54:54 +00:00"
