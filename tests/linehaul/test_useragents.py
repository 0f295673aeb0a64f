"""User-agent rules beyond the fixtures: JSON coercions, precedence, the caches, the schema."""

from __future__ import annotations

from typing import Any

import pytest

from pythonhosted.linehaul.memo import Memo
from pythonhosted.linehaul.useragents import IGNORED, KNOWN
from pythonhosted.warehouse.schema import FILE_DOWNLOADS, SIMPLE_REQUESTS, bigquery_fields


def _details(user_agent: str) -> Any:
    known = KNOWN[user_agent]
    assert known is not IGNORED and known is not None
    return known


@pytest.mark.parametrize(
    ("json", "path", "expected"),
    [
        ('{"python": 3.8}', ("python",), "3.8"),  # as the reference: str() of a number
        ('{"cpu": true}', ("cpu",), "True"),
        ('{"python": {"a": 1}}', ("python",), None),  # the reference: "{'a': 1}"
        ('{"ci": "false"}', ("ci",), None),  # the reference: True (truthiness)
        ('{"ci": false}', ("ci",), False),
        ('{"installer": "pip"}', ("installer",), None),  # the reference: an all-null record
        ('{"installer": {"subcommand": "install"}}', ("installer", "subcommand"), None),
        (
            '{"installer": {"subcommand": ["a b", 1, "it\'s"]}}',
            ("installer", "subcommand"),
            "'a b' 1 'it'\"'\"'s'",
        ),
        ('{"installer": {"subcommand": []}}', ("installer", "subcommand"), ""),
        ('{"installer": {"subcommand": [null]}}', ("installer", "subcommand"), None),
        ('{"distro": {}}', ("distro", "libc"), None),
        (
            '{"python": 123456789012345678901234567890}',
            ("python",),
            "123456789012345678901234567890",
        ),
        ('{"python": NaN}', ("python",), "nan"),
    ],
)
def test_json_values_are_coerced_by_type(json: str, path: tuple[str, ...], expected: Any) -> None:
    value = _details(f"pip/24.0 {json}")
    for key in path:
        value = value[key]
    assert value == expected


@pytest.mark.parametrize("json", ["null", "[1]", '"python"', "5", "{bad"])
def test_json_that_is_not_an_object_is_not_recognised(json: str) -> None:
    assert KNOWN[f"pip/24.0 {json}"] is None


@pytest.mark.parametrize(
    ("user_agent", "installer"),
    [
        ("Mozilla/5.0 pex/1.0", "Browser"),
        ('pip/24.0 {"x": "pex/1"}', None),  # pip's record (no installer in the JSON)
        ("curl/7.0 devpi-server/1.0 (x)", "Browser"),
        ("devpi-server/1.0 (pex/1.0)", "devpi"),
        ('pip/24.0 ["pex/1"]', "pex"),  # not pip's (not an object), so pex's
        ("pip/abc pex/1.0", "pex"),
    ],
)
def test_anchored_families_come_first(user_agent: str, installer: str | None) -> None:
    found = _details(user_agent)["installer"]
    assert (found and found["name"]) == installer


def test_ignored_and_unknown() -> None:
    assert KNOWN["Go-http-client/1.1"] is IGNORED
    assert KNOWN["Mozilla/5.0 (compatible; Nutch)"]["installer"]["name"] == "Browser"  # type: ignore[index]
    assert KNOWN["Apache Nutch"] is IGNORED
    assert KNOWN["no idea"] is None


def test_memo_is_bounded_first_in_first_out() -> None:
    calls: list[int] = []
    memo: Memo[int, int] = Memo(lambda key: calls.append(key) or key * 2, 2, 1 << 20)
    assert [memo[1], memo[2], memo[1], memo[3], memo[1]] == [2, 4, 2, 6, 2]
    assert calls == [1, 2, 3, 1]
    assert len(memo) == 2


def test_memo_is_bounded_in_bytes() -> None:
    """Long keys evict the oldest entries by weight; one too heavy to keep is computed only."""
    memo: Memo[str, int] = Memo(len, 1000, 8000, lambda key, value: len(key))
    for key in ("a" * 600, "b" * 600, "c" * 600):
        memo[key]
    assert (len(memo), memo.bytes) == (3, 1800)
    for number in range(20):  # 20 x 900 bytes: only the last eight fit
        assert memo[f"{number:02}" * 450] == 900
    assert memo.bytes == 7200
    assert list(memo) == [f"{number:02}" * 450 for number in range(12, 20)]
    assert memo["z" * 1001] == 1001  # over an eighth of the bound: not kept
    assert "z" * 1001 not in memo and len(memo) == 8
    memo.clear()
    assert (len(memo), memo.bytes) == (0, 0)


def test_bigquery_schema() -> None:
    downloads = bigquery_fields(FILE_DOWNLOADS)
    by_name = {field["name"]: field for field in downloads}
    assert list(by_name) == [
        "timestamp",
        "country_code",
        "url",
        "project",
        "file",
        "details",
        "tls_protocol",
        "tls_cipher",
        "response",  # ours, after PyPI's columns
    ]
    assert by_name["timestamp"]["type"] == "TIMESTAMP"
    assert [(f["name"], f["type"]) for f in by_name["response"]["fields"]] == [  # type: ignore[attr-defined]
        ("status", "INTEGER"),
        ("bytes_sent", "INTEGER"),
        ("range_requested", "BOOLEAN"),
        ("range_start", "INTEGER"),
    ]
    details = {field["name"]: field for field in by_name["details"]["fields"]}  # type: ignore[attr-defined]
    assert details["ci"] == {
        "name": "ci",
        "type": "BOOLEAN",
        "mode": "NULLABLE",
        "description": "True when the installer detected a CI system.",
    }
    assert details["distro"]["fields"][3]["fields"] == [
        {"name": "lib", "type": "STRING", "mode": "NULLABLE"},
        {"name": "version", "type": "STRING", "mode": "NULLABLE"},
    ]
    assert [field["name"] for field in bigquery_fields(SIMPLE_REQUESTS)] == [
        name for name in by_name if name not in ("file", "response")
    ]
