"""Byte ranges and validators, case by case against RFC 9110."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pythonhosted.web.http import Unsatisfiable, etag_matches, not_modified, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 5)),
        ("bytes=5-", 10, (5, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=8-100", 10, (8, 10)),
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=5-2", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=", 10, None),
        ("bytes=--1", 10, None),
        ("bytes=1", 10, None),
        # hostile numbers: thousands of digits, non-ASCII digits
        ("bytes=0-" + "9" * 5_000, 10, (0, 10)),
        ("bytes=-" + "9" * 5_000, 10, (0, 10)),
        ("bytes=" + "0" * 5_000 + "2-3", 10, (2, 4)),
        ("bytes=0-\u00b2", 10, None),
        ("bytes=\u0661-2", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=-5", 0), ("bytes=" + "9" * 5_000 + "-", 10)],
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


def test_validators() -> None:
    moment = datetime(2021, 1, 7, 20, 54, 54, 123, tzinfo=UTC)
    assert etag_matches('"a", W/"b"', '"b"')
    assert etag_matches("*", '"x"')
    assert not etag_matches('"a"', '"b"')
    assert not_modified(None, "Thu, 07 Jan 2021 20:54:54 GMT", None, moment)
    assert not not_modified(None, "Thu, 07 Jan 2021 20:54:53 GMT", None, moment)
    assert not not_modified('"other"', "Thu, 07 Jan 2021 20:54:54 GMT", '"x"', moment)
    assert not not_modified(None, "garbage", '"x"', moment)
