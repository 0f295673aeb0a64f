"""``pythonhosted linehaul parse`` end to end: the real log batches, formats, errors."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.linehaul.cli import linehaul

LOGS = Path("/work/shared/data/linehaul/logs")
DOWNLOADS = next(LOGS.glob("downloads-*.log.gz"))
SIMPLE = next(LOGS.glob("simple-*.log.gz"))
GOOD = (
    b"download|Thu, 07 Jan 2021 20:54:54 GMT|US|/packages/a/b/c/foo-1.0.tar.gz|TLSv1.3|X|foo|"
    b"1.0|sdist|pip/24.0 {}\n"
)


def _gunzip(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def _run(args: list[str], stdin: bytes | None = None) -> Any:
    return CliRunner().invoke(linehaul, ["parse", *args], input=stdin)


def test_real_batches_match_the_reference(ref_row: Any, tmp_path: Path) -> None:
    rejects = tmp_path / "unprocessed.txt"
    result = CliRunner().invoke(
        main, ["linehaul", "parse", str(DOWNLOADS), str(SIMPLE), "--unprocessed", str(rejects)]
    )
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(row) for row in result.stdout_bytes.splitlines()]
    lines = [*_gunzip(DOWNLOADS).splitlines(), *_gunzip(SIMPLE).splitlines()]
    expected = [ref_row(line.decode()) for line in lines]
    assert rows == [row for row in expected if row is not None]
    assert (len(rows), expected.count(None)) == (6, 2)  # 4 downloads + 2 simple; 2 "(null)" UAs
    assert result.stderr == "linehaul parse: 6 rows, 2 ignored, 0 unprocessable\n"
    assert rejects.read_bytes() == b""  # the reference's cloud function would put the 2 here


def test_plain_gzip_and_stdin_agree(tmp_path: Path) -> None:
    plain = tmp_path / "batch.log"
    plain.write_bytes(_gunzip(DOWNLOADS))
    from_gzip = _run([str(DOWNLOADS)]).stdout_bytes
    assert _run([str(plain)]).stdout_bytes == from_gzip
    assert _run([], stdin=plain.read_bytes()).stdout_bytes == from_gzip
    assert _run([], stdin=DOWNLOADS.read_bytes()).stdout_bytes == from_gzip
    assert from_gzip.count(b"\n") == 4


def test_unprocessable_lines_are_kept_verbatim_in_order(tmp_path: Path) -> None:
    bad = [b"garbage\n", b"download|not a date|US|/x|a|b|foo|1.0|sdist|ua\n", b"\xff\xfe|x"]
    batch = tmp_path / "batch.log"
    batch.write_bytes(bad[0] + GOOD + bad[1] + GOOD + bad[2])
    rejects = tmp_path / "rejects.txt"
    result = _run([str(batch), "--unprocessed", str(rejects)])
    assert result.exit_code == 0
    assert result.stdout_bytes.count(b"\n") == 2
    assert rejects.read_bytes() == b"".join(bad) + b"\n"
    assert result.stderr == "linehaul parse: 2 rows, 0 ignored, 3 unprocessable\n"


def test_bytes_that_are_not_utf8_become_replacement_characters() -> None:
    line = GOOD.replace(b"pip/24.0 {}", b"curl/8.0 \xff\xfe").replace(b"|US|", b"|U\xc3|")
    result = _run([], stdin=line)
    assert result.exit_code == 0
    row = orjson.loads(result.stdout_bytes)
    assert row["country_code"] == "U\ufffd"
    assert row["details"]["installer"]["name"] == "Browser"


def test_a_missing_file_is_one_error_line(tmp_path: Path) -> None:
    result = _run([str(DOWNLOADS), str(tmp_path / "missing.log.gz")])
    assert result.exit_code == 1
    assert result.stdout_bytes == b""  # nothing is parsed before every input is open
    assert (
        result.stderr
        == f"Error: cannot read {tmp_path / 'missing.log.gz'}: No such file or directory\n"
    )


def test_blank_and_long_lines_are_counted_not_unprocessed(tmp_path: Path) -> None:
    long_line = b"download|" + b"z" * (64 << 10) + b"\n"
    batch = tmp_path / "batch.log.gz"
    batch.write_bytes(gzip.compress(b"\n \r\n" + GOOD + long_line + b"garbage\n" + GOOD))
    rejects = tmp_path / "rejects.txt"
    result = _run([str(batch), "--unprocessed", str(rejects)])
    assert result.exit_code == 0
    assert result.stdout_bytes.count(b"\n") == 2
    assert rejects.read_bytes() == b"garbage\n"
    assert result.stderr == (
        "linehaul parse: 2 rows, 0 ignored, 1 unprocessable, 2 blank, 1 too long\n"
    )


def test_max_line_length_is_a_setting(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("PYTHONHOSTED_LINEHAUL__MAX_LINE_LENGTH", "1024")
    result = _run([], stdin=GOOD + b"x" * 1025 + b"\n" + b"y" * 1024 + b"\n")
    assert result.exit_code == 0
    assert result.stderr == "linehaul parse: 1 rows, 0 ignored, 1 unprocessable, 1 too long\n"


def test_millions_of_empty_lines_are_counted_and_part_no_served_line(tmp_path: Path) -> None:
    served = b"served|200|5|0|0|||||\n"
    empty = b"\n" * 5_000_000
    batch = tmp_path / "batch.log.gz"
    batch.write_bytes(gzip.compress(empty + GOOD + served + empty + GOOD + empty, 1))
    result = _run([str(batch)])
    assert result.exit_code == 0
    rows = [orjson.loads(row) for row in result.stdout_bytes.splitlines()]
    assert [row.get("response") for row in rows] == [
        None,
        {"status": 200, "bytes_sent": 5, "range_requested": False, "range_start": 0},
    ]
    assert result.stderr == "linehaul parse: 2 rows, 0 ignored, 0 unprocessable, 15000000 blank\n"
