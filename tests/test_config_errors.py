"""Operator messages for configuration mistakes. Every mistake is one line on stderr naming the
setting, where its value came from (environment variable, TOML file and key, or flag) and what
was expected; exit status 2.

The table of cases runs the CLI in-process (click's runner, the same command objects); each
kind of source is also run as a real ``python -m pythonhosted`` process, as an operator runs it,
and so are the entry points of ``--workers`` processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pythonhosted.cli import main

CONFIG = "pythonhosted.toml"


@pytest.fixture(autouse=True)
def _no_settings_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PYTHONHOSTED_* variables during a test, and none left behind: ``--config`` sets
    PYTHONHOSTED_CONFIG in the process (for workers), so it is recorded to be removed."""
    monkeypatch.setenv("PYTHONHOSTED_CONFIG", "")
    for name in list(os.environ):
        if name.upper().startswith("PYTHONHOSTED_"):
            monkeypatch.delenv(name)


def run_cli(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    toml: str | None = None,
    process: bool = False,
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``pythonhosted ARGS`` with only the given
    PYTHONHOSTED_* variables; ``toml`` is written to ``tmp_path/pythonhosted.toml`` and passed
    with --config. ``process`` runs ``python -m pythonhosted`` instead of the in-process CLI."""
    argv: list[str] = []
    if toml is not None:
        (tmp_path / CONFIG).write_text(toml)
        argv += ["--config", str(tmp_path / CONFIG)]
    argv += args
    if not process:
        result = CliRunner(env=env).invoke(main, argv)
        return result.exit_code, result.stdout, result.stderr
    environ = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "pythonhosted", *argv],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


def assert_one_line(result: tuple[int, str, str], line: str) -> None:
    assert result == (2, "", f"Error: {line}\n")


@pytest.mark.parametrize(
    ("variables", "line"),
    [
        (
            {"PYTHONHOSTED_FILES__WORKERS": "abc"},
            "files.workers (environment variable PYTHONHOSTED_FILES__WORKERS): input should be "
            "a valid integer, unable to parse string as an integer, got 'abc'",
        ),
        (
            {"pythonhosted_index__cache_ttl": "-1"},  # read case-insensitively, named as spelled
            "index.cache_ttl (environment variable pythonhosted_index__cache_ttl): input should "
            "be greater than or equal to 0, got '-1'",
        ),
        (
            {"PYTHONHOSTED_CAMO__TIMEOUT": "soon"},
            "camo.timeout (environment variable PYTHONHOSTED_CAMO__TIMEOUT): input should be a "
            "valid number, unable to parse string as a number, got 'soon'",
        ),
        (
            {"PYTHONHOSTED_FILES__REQUIRE_TLS": "maybe"},
            "files.require_tls (environment variable PYTHONHOSTED_FILES__REQUIRE_TLS): input "
            "should be a valid boolean, unable to interpret input, got 'maybe'",
        ),
        (
            {"PYTHONHOSTED_LINEHAUL__PUBLISH_BATCH_FILES": "0"},
            "linehaul.publish_batch_files (environment variable "
            "PYTHONHOSTED_LINEHAUL__PUBLISH_BATCH_FILES): input should be greater than 0, got '0'",
        ),
        (
            {"PYTHONHOSTED_CAMO__ALLOW_NETWORKS": "10.0.0.0/8"},
            "camo.allow_networks (environment variable PYTHONHOSTED_CAMO__ALLOW_NETWORKS): "
            "expected JSON (a list or a table), got '10.0.0.0/8'",
        ),
        (
            {"PYTHONHOSTED_CAMO__ALLOW_NETWORKS": '["10.0.0.0/8", "10.0.0.300/32"]'},
            "camo.allow_networks[1] (environment variable PYTHONHOSTED_CAMO__ALLOW_NETWORKS): "
            "value is not a valid IPv4 or IPv6 network, got '10.0.0.300/32'",
        ),
        (
            {"PYTHONHOSTED_FILES": '{"workers": 0, "log_period": "x"}'},  # a whole section
            "files.workers (environment variable PYTHONHOSTED_FILES): input should be greater "
            "than or equal to 1, got 0 (and 1 more)",
        ),
        (
            {"PYTHONHOSTED_STATS_WEB__WORKERS": "1000"},  # an extra zero: refused before forking
            "stats_web.workers (environment variable PYTHONHOSTED_STATS_WEB__WORKERS): input "
            "should be less than or equal to 256, got '1000'",
        ),
        (
            {"PYTHONHOSTED_FILES__PURGE_URLS": '["https://edge-1.internal", "edge-2:8000"]'},
            "files.purge_urls (environment variable PYTHONHOSTED_FILES__PURGE_URLS): value error, "
            "'edge-2:8000' is not an http(s) URL of an edge, got ['https://edge-1.internal', "
            "'edge-2:8000']",
        ),
        (
            {"PYTHONHOSTED_FILES__PURGE_URLS": '["http://edge:80000"]'},
            "files.purge_urls (environment variable PYTHONHOSTED_FILES__PURGE_URLS): value error, "
            "'http://edge:80000' is not a URL: Port out of range 0-65535, got "
            "['http://edge:80000']",
        ),
        (  # a password in a URL is never shown, with an @ in it too, whatever the check
            {"PYTHONHOSTED_FILES__PURGE_URLS": '["http://ops:pa@ss@edge:8000/cdn"]'},
            "files.purge_urls (environment variable PYTHONHOSTED_FILES__PURGE_URLS): value error, "
            "an edge's URL takes no credentials (files.purge_secret authenticates): "
            "http://***@edge:8000/cdn, got ['http://***@edge:8000/cdn']",
        ),
        (
            {"PYTHONHOSTED_FILES__PURGE_URLS": "http://ops:secret@edge:8000"},
            "files.purge_urls (environment variable PYTHONHOSTED_FILES__PURGE_URLS): expected "
            "JSON (a list or a table), got 'http://***@edge:8000'",
        ),
        (
            {"PYTHONHOSTED_STATS_WEB__MAX_PENDING": str(2**64)},  # no shedding at all
            "stats_web.max_pending (environment variable PYTHONHOSTED_STATS_WEB__MAX_PENDING): "
            f"input should be less than or equal to 4096, got '{2**64}'",
        ),
        (
            {"PYTHONHOSTED_FILES__WORKRES": "3"},
            "environment variable PYTHONHOSTED_FILES__WORKRES: no such setting "
            "(did you mean PYTHONHOSTED_FILES__WORKERS?)",
        ),
        (
            {"PYTHONHOSTED_CONVEYOR__CACHE_TTLL": "3"},
            "environment variable PYTHONHOSTED_CONVEYOR__CACHE_TTLL: no such setting "
            "(did you mean PYTHONHOSTED_CONVEYOR__CACHE_TTL?)",
        ),
        (
            {"PYTHONHOSTED_PRIMARY": "file:///srv"},  # a field without its section
            "environment variable PYTHONHOSTED_PRIMARY: no such setting "
            "(did you mean PYTHONHOSTED_FILES__PRIMARY?)",
        ),
        (
            {"PYTHONHOSTED_LOGJSON": "true"},
            "environment variable PYTHONHOSTED_LOGJSON: no such setting "
            "(did you mean PYTHONHOSTED_LOG_JSON?)",
        ),
        (
            {"PYTHONHOSTED_QUEUE__DEPTH": "1"},  # no such section, nothing close
            "environment variable PYTHONHOSTED_QUEUE__DEPTH: no such setting",
        ),
        (
            {"PYTHONHOSTED_STATS__WEB": "1"},  # a section's name split at the wrong place
            "environment variable PYTHONHOSTED_STATS__WEB: no such setting (did you mean "
            "PYTHONHOSTED_STATS_WEB?)",
        ),
        (
            {"PYTHONHOSTED_CONFIG": "/nonexistent/pythonhosted.toml"},
            "config file not found: /nonexistent/pythonhosted.toml (from PYTHONHOSTED_CONFIG)",
        ),
    ],
)
def test_environment_mistakes(tmp_path: Path, variables: dict[str, str], line: str) -> None:
    assert_one_line(run_cli(tmp_path, "config", env=variables), line)


def test_a_store_urls_password_is_never_shown(tmp_path: Path) -> None:
    env = {"PYTHONHOSTED_FILES__PRIMARY": "https://key:secret@s3.internal/bucket"}
    assert_one_line(
        run_cli(tmp_path, "files", "serve", env=env, process=True),
        "unsupported store URL 'https://***@s3.internal/bucket' (use file://, memory://, "
        "s3:// or gs://)",
    )


def test_environment_mistake_in_a_process(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "config", env={"PYTHONHOSTED_FILES__WORKERS": "abc"}, process=True)
    assert_one_line(
        result,
        "files.workers (environment variable PYTHONHOSTED_FILES__WORKERS): input should be a "
        "valid integer, unable to parse string as an integer, got 'abc'",
    )


def test_variables_of_ours_that_are_not_settings_pass(tmp_path: Path) -> None:
    variables = {
        "PYTHONHOSTED_CAMO__HEADERS__X_TEST": "1",  # one key of a table setting
        "PYTHONHOSTED_CAMO_KEY": "k",
        "PYTHONHOSTED_WORKER_METRICS_DIR": str(tmp_path),
        "PYTHONHOSTED_SOMETHING_ELSE_ENTIRELY": "1",  # ours by prefix only: not a typo of a setting
    }
    code, out, err = run_cli(tmp_path, "config", env=variables, process=True)
    assert (code, err) == (0, "")
    assert '"x_test": "1"' in out


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        (
            "[files]\nworkers = 'two'\n",
            "files.workers (config file {path}, key [files] workers): input should be a valid "
            "integer, unable to parse string as an integer, got 'two'",
        ),
        (
            "[camo]\nmax_redirects = -1\n",
            "camo.max_redirects (config file {path}, key [camo] max_redirects): input should be "
            "greater than or equal to 0, got -1",
        ),
        (
            "data_dir = 5\n",
            "data_dir (config file {path}, key data_dir): input is not a valid path for "
            "<class 'pathlib.Path'>, got 5",
        ),
        (
            "[camo]\nkye = 'abc'\n",  # camo, conveyor and linehaul ignored unknown keys before
            "camo.kye (config file {path}, key [camo] kye): no such setting "
            "(did you mean camo.key?)",
        ),
        (
            "[conveyor]\ndocs_store = 'file:///srv/docs'\n",
            "conveyor.docs_store (config file {path}, key [conveyor] docs_store): no such setting",
        ),
        (
            "[linehaul]\ningest_every = 5\n",
            "linehaul.ingest_every (config file {path}, key [linehaul] ingest_every): no such "
            "setting (did you mean linehaul.ingest_interval?)",
        ),
        (
            "[fles]\nprimary = 'file:///srv'\n",
            "fles (config file {path}, key fles): no such setting (did you mean files?)",
        ),
        (
            "[files]\nadmn_secret = 'hunter2'\n",  # an unknown key's value is never shown
            "files.admn_secret (config file {path}, key [files] admn_secret): no such setting "
            "(did you mean files.admin_secret?)",
        ),
        (
            "[files]\npurge_secret = 1234\n",  # a secret's value is masked
            "files.purge_secret (config file {path}, key [files] purge_secret): input should be "
            "a valid string, got '**********'",
        ),
        (
            "[files\nworkers = 2\n",
            "config file {path}: Expected ']' at the end of a table declaration "
            "(at line 1, column 7)",
        ),
        (
            "[files]\nworkers = 2\nworkers = 3\n",
            "config file {path}: Cannot overwrite a value (at line 3, column 12)",
        ),
    ],
)
def test_toml_mistakes(tmp_path: Path, toml: str, line: str) -> None:
    result = run_cli(tmp_path, "config", toml=toml)
    assert_one_line(result, line.format(path=tmp_path / CONFIG))
    assert "hunter2" not in result[2] and "1234" not in result[2]


def test_toml_mistake_in_a_process(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "config", toml="[conveyor]\nworkers = 0\n", process=True)
    assert_one_line(
        result,
        f"conveyor.workers (config file {tmp_path / CONFIG}, key [conveyor] workers): input "
        "should be greater than or equal to 1, got 0",
    )


def test_each_source_is_named_by_priority(tmp_path: Path) -> None:
    """A value from the environment beats the file's, and the error names the one that won."""
    toml = "[files]\nworkers = 'from-file'\nlog_period = 'from-file'\n"
    result = run_cli(tmp_path, "config", toml=toml, env={"PYTHONHOSTED_FILES__WORKERS": "from-env"})
    assert_one_line(
        result,
        "files.workers (environment variable PYTHONHOSTED_FILES__WORKERS): input should be a "
        "valid integer, unable to parse string as an integer, got 'from-env' (and 1 more)",
    )
    fixed = run_cli(tmp_path, "config", toml=toml, env={"PYTHONHOSTED_FILES__WORKERS": "2"})
    assert_one_line(
        fixed,
        f"files.log_period (config file {tmp_path / CONFIG}, key [files] log_period): input "
        "should be a valid number, unable to parse string as a number, got 'from-file'",
    )


def test_missing_config_flag_file(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--config", str(tmp_path / "nope.toml"), "config")
    assert_one_line(result, f"config file not found: {tmp_path / 'nope.toml'}")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--timeout", "soon"),
            "camo.timeout (flag --timeout): input should be a valid number, unable to parse "
            "string as a number, got 'soon'",
        ),
        (
            ("--idletimeout", "forever"),
            "camo.idle_timeout (flag --idletimeout): input should be a valid number, unable to "
            "parse string as a number, got 'forever'",
        ),
        (
            ("--allow-network", "10.0.0.0/33"),
            "camo.allow_networks[0] (flag --allow-network): value is not a valid IPv4 or IPv6 "
            "network, got '10.0.0.0/33'",
        ),
        (
            ("--workers", "none"),  # click's own check of a typed flag: one line as well
            "Invalid value for '--workers': 'none' is not a valid integer range.",
        ),
        (
            ("--workers", "100000"),  # checked before the banner, not by running out of fds
            "Invalid value for '--workers': 100000 is not in the range 1<=x<=256.",
        ),
    ],
)  # fmt: skip
def test_flag_mistakes(tmp_path: Path, args: tuple[str, ...], line: str) -> None:
    result = run_cli(tmp_path, "camo", "serve", *args, env={"PYTHONHOSTED_CAMO_KEY": "k"})
    assert_one_line(result, line)


def test_the_stats_web_admission_bound_is_at_least_one(tmp_path: Path) -> None:
    """A bound of 0 would shed every cold request (and 2**64 none): refused in one line,
    flag or setting."""
    flag = run_cli(tmp_path, "stats-web", "serve", "--max-pending", "0")
    assert_one_line(flag, "Invalid value for '--max-pending': 0 is not in the range 1<=x<=4096.")
    variable = "PYTHONHOSTED_STATS_WEB__MAX_PENDING"
    setting = run_cli(tmp_path, "stats-web", "serve", env={variable: "0"})
    assert_one_line(
        setting,
        f"stats_web.max_pending (environment variable {variable}): input should be greater "
        "than or equal to 1, got '0'",
    )


def test_flag_mistake_in_a_process(tmp_path: Path) -> None:
    env = {"PYTHONHOSTED_CAMO_KEY": "k"}
    result = run_cli(tmp_path, "camo", "serve", "--timeout", "1x", env=env, process=True)
    assert_one_line(
        result,
        "camo.timeout (flag --timeout): input should be a valid number, unable to parse string "
        "as a number, got '1x'",
    )


@pytest.mark.parametrize(
    "factory",
    [
        "pythonhosted.files.service:worker_app",
        "pythonhosted.camo.service:worker_app",
        "pythonhosted.conveyor.service:worker_app",
    ],
)
def test_worker_processes_report_one_line(tmp_path: Path, factory: str) -> None:
    """``--workers N`` processes rebuild their settings from the environment: the entry point
    each one runs reports a mistake as one line and exits 2, without a traceback."""
    module, function = factory.split(":")
    environ = {**os.environ, "PYTHONHOSTED_CONVEYOR__CACHE_ENTRIES": "many"}
    code = f"from {module} import {function}; {function}()"
    done = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60
    )
    assert_one_line(
        (done.returncode, done.stdout, done.stderr),
        "conveyor.cache_entries (environment variable PYTHONHOSTED_CONVEYOR__CACHE_ENTRIES): "
        "input should be a valid integer, unable to parse string as an integer, got 'many'",
    )


@pytest.mark.parametrize(
    ("variables", "line"),
    [
        (
            {"PYTHONHOSTED_FILES__LOG_PERIOD": "-5"},  # the edge answered nothing: a busy ship loop
            "files.log_period (environment variable PYTHONHOSTED_FILES__LOG_PERIOD): input "
            "should be greater than 0, got '-5'",
        ),
        (
            {"PYTHONHOSTED_FILES__LOG_PERIOD": "nan"},  # batches never shipped, lines lost at stop
            "files.log_period (environment variable PYTHONHOSTED_FILES__LOG_PERIOD): input "
            "should be a finite number, got 'nan'",
        ),
        (
            {"PYTHONHOSTED_HTTP__HEADER_TIMEOUT": "inf"},  # OverflowError after the banner
            "http.header_timeout (environment variable PYTHONHOSTED_HTTP__HEADER_TIMEOUT): input "
            "should be a finite number, got 'inf'",
        ),
        (
            {"PYTHONHOSTED_LINEHAUL__INGEST_INTERVAL": "1e308"},
            "linehaul.ingest_interval (environment variable "
            "PYTHONHOSTED_LINEHAUL__INGEST_INTERVAL): input should be less than or equal to "
            "31622400, got '1e308'",
        ),
        (
            {"PYTHONHOSTED_FILES__LOG_SPOOL_SYNC_INTERVAL": "0"},
            "files.log_spool_sync_interval (environment variable "
            "PYTHONHOSTED_FILES__LOG_SPOOL_SYNC_INTERVAL): input should be greater than 0, got '0'",
        ),
        (
            {"PYTHONHOSTED_FILES__LOG_COMPRESS_LEVEL": "99"},  # every batch failed to ship
            "files.log_compress_level (environment variable "
            "PYTHONHOSTED_FILES__LOG_COMPRESS_LEVEL): input should be less than or equal to 9, "
            "got '99'",
        ),
        (
            {"PYTHONHOSTED_FILES__LOG_BATCH_LINES": "0"},
            "files.log_batch_lines (environment variable PYTHONHOSTED_FILES__LOG_BATCH_LINES): "
            "input should be greater than or equal to 1, got '0'",
        ),
        (
            {"PYTHONHOSTED_FILES__CACHE_MAX_BYTES": "-1"},
            "files.cache_max_bytes (environment variable PYTHONHOSTED_FILES__CACHE_MAX_BYTES): "
            "input should be greater than or equal to 0, got '-1'",
        ),
        (
            {"PYTHONHOSTED_FILES__CACHE_MAX_BYTES": str(10**30)},
            "files.cache_max_bytes (environment variable PYTHONHOSTED_FILES__CACHE_MAX_BYTES): "
            f"value error, must be at most {2**63 - 1}, got '{10**30}'",
        ),
        (
            {"PYTHONHOSTED_HTTP__BACKLOG": str(10**22)},  # "cannot listen: int too large"
            "http.backlog (environment variable PYTHONHOSTED_HTTP__BACKLOG): input should be "
            f"less than or equal to 2147483647, got '{10**22}'",
        ),
        (
            {"PYTHONHOSTED_FILES__BIND": "127.0.0.1:80\n00"},
            "files.bind (environment variable PYTHONHOSTED_FILES__BIND): value error, must not "
            "contain control characters, found '\\n', got '127.0.0.1:80\\n00'",
        ),
        (
            {"PYTHONHOSTED_CAMO__HEADERS": '{"X-A": "b\\r\\nSet-Cookie: x"}'},
            "camo.headers (environment variable PYTHONHOSTED_CAMO__HEADERS): value error, must "
            "not contain control characters, found '\\r', got {'X-A': 'b\\r\\nSet-Cookie: x'}",
        ),
        (
            {"PYTHONHOSTED_FILES__PURGE_SECRET": "hunter2\n"},  # named, never shown
            "files.purge_secret (environment variable PYTHONHOSTED_FILES__PURGE_SECRET): value "
            "error, must not contain control characters, found '\\n', got '**********'",
        ),
        (
            {"PYTHONHOSTED_DATA_DIR": "var\n"},
            "data_dir (environment variable PYTHONHOSTED_DATA_DIR): value error, must not "
            "contain control characters, found '\\n', got 'var\\n'",
        ),
        (
            {"PYTHONHOSTED_DATA_DIR": ""},  # was the working directory: stores and keys there
            "data_dir (environment variable PYTHONHOSTED_DATA_DIR): value error, must not "
            "be empty (leave the setting out for its default), got ''",
        ),
        (
            {"PYTHONHOSTED_FILES__LOG_SPOOL_DIR": " "},
            "files.log_spool_dir (environment variable PYTHONHOSTED_FILES__LOG_SPOOL_DIR): value "
            "error, must not be empty (leave the setting out for its default), got ' '",
        ),
        (
            {"PYTHONHOSTED_STATS_WEB__TODAY": "0001-01-01"},  # its yesterday overflows: a 500 each
            "stats_web.today (environment variable PYTHONHOSTED_STATS_WEB__TODAY): input should "
            "be greater than or equal to 1970-01-01, got '0001-01-01'",
        ),
        (
            {"PYTHONHOSTED_LOG_LEVEL": "LOUD"},  # was "Error: ValueError: Unknown level", exit 1
            "log_level (environment variable PYTHONHOSTED_LOG_LEVEL): value error, must be one "
            "of CRITICAL, DEBUG, ERROR, FATAL, INFO, NOTSET, WARN, WARNING, got 'LOUD'",
        ),
    ],
)  # fmt: skip
def test_values_at_their_edges(tmp_path: Path, variables: dict[str, str], line: str) -> None:
    """Zero, negative, non-finite, huge and multi-line values: each was taken and failed later
    (after the banner, or silently: lines never shipped), now one line and exit status 2."""
    result = run_cli(tmp_path, "config", env=variables)
    assert_one_line(result, line)
    assert "hunter2" not in result[2]


def test_a_lower_case_log_level_is_taken(tmp_path: Path) -> None:
    code, _, err = run_cli(tmp_path, "config", env={"PYTHONHOSTED_LOG_LEVEL": "debug"})
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("path", "line"),
    [
        # /dev/zero was read until the machine ran out of memory (23 GB); /dev/null is as much
        # not a settings file, and harmless to the old code
        ("/dev/null", "config file /dev/null: not a regular file"),
        ("{tmp}/big.toml", "config file {tmp}/big.toml: larger than 1048576 bytes"),
        (
            "{tmp}/binary.toml",
            "config file {tmp}/binary.toml: 'utf-8' codec can't decode byte 0xff in position "
            "0: invalid start byte",
        ),
        ("{tmp}", "cannot read config file {tmp}: Is a directory"),
    ],
)
def test_config_files_that_are_not_settings(tmp_path: Path, path: str, line: str) -> None:
    """The wrong file named as the config (a device, a log, a directory) is one line, read
    no further than a settings file could be long."""
    (tmp_path / "big.toml").write_text("# " + "x" * 2**21 + "\n")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe")
    variables = {"PYTHONHOSTED_CONFIG": path.format(tmp=tmp_path)}
    assert_one_line(run_cli(tmp_path, "config", env=variables), line.format(tmp=tmp_path))
