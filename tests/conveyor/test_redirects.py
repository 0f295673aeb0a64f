"""The docs redirect table against hostile targets, and how soon an edit is served.

One check guards both sides: ``docs redirect`` refuses a bad target, and the service skips a
hand-written line with one (logged with its line number, counted) while serving the others.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner

from pythonhosted.cli import main
from pythonhosted.conveyor import redirects as redirects_module
from pythonhosted.conveyor.redirects import REDIRECTS_KEY, RedirectFile, parse_redirects
from pythonhosted.storage import open_store
from support.conveyor import ConveyorFactory
from support.processes import wait_until

SECURITY = {"x-frame-options": "deny", "x-content-type-options": "nosniff"}
HOSTILE = [
    "javascript:alert(document.domain)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//evil.example",
    "//evil.example/path",
    "https:evil.example",
    "https:///evil.example",
    "https://",
    "evil.example",
    "/relative/path",
    "ftp://files.example/docs",
    "file:///etc/passwd",
    "https://docs.example\r\nSet-Cookie: session=stolen",
    "https://docs.example\nX-Injected: 1",
    "https://docs.example/\x00",
    "https://docs.example/\x7f",
    "https://docs.example/\u0085",
    "https://docs.example/\u202egnp.exe",
    " https://docs.example",
    "https://docs.example/a b",
    "https://pypi.org@evil.example",
    "https://user:secret@docs.example",
    "https:\\\\evil.example",
    "https://docs.example\\@evil.example",
    "https://docs.example:99999",
    "https://docs.example:port",
    "https://docs.example/" + "a" * 2100,
]
GOOD = {
    "plain": ("https://plain.example/en", True),
    "upper": ("HTTPS://Upper.Example", False),
    "port": ("http://127.0.0.1:8080/docs", True),
    "ipv6": ("http://[::1]:9/", False),
    "query": ("https://q.example/?from=pythonhosted#top", False),
}


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def line(project: str, base_uri: str, include_path: bool = False) -> bytes:
    entry = {"project_name": project, "base_uri": base_uri, "include_path": include_path}
    return orjson.dumps(entry) + b"\n"


def put(url: str, key: str, data: bytes) -> None:
    asyncio.run(open_store(url).put(key, data))


def stored_table(url: str) -> bytes:
    return asyncio.run(open_store(url).get_bytes(REDIRECTS_KEY))


def metric(base: str, name: str) -> float:
    found = re.search(
        rf"^{re.escape(name)} (\S+)$", httpx.get(base + "/metrics", timeout=60).text, re.M
    )
    return float(found.group(1)) if found else 0.0


@pytest.fixture(params=["file", "s3"])
def docs_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path}/docs"
    url: str = request.getfixturevalue("s3_url")
    return url


def test_service_skips_hostile_lines_and_serves_the_rest(
    docs_store: str, conveyor: ConveyorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    table = b"".join(line(name, uri, include) for name, (uri, include) in GOOD.items())
    table += b"".join(line(f"bad{number}", uri) for number, uri in enumerate(HOSTILE))
    # A later bad line for a project takes its earlier target out of service too.
    table += line("changed", "https://first.example") + line("changed", "javascript:void(0)")
    put(docs_store, REDIRECTS_KEY, table)
    put(docs_store, "bad0/index.html", b"the project's own docs")
    caplog.set_level(logging.ERROR, logger="pythonhosted.conveyor.redirects")
    with conveyor(docs=docs_store) as base:
        assert httpx.get(base + "/plain/a/b.html").headers["location"] == (
            "https://plain.example/en/a/b.html"
        )
        assert httpx.get(base + "/upper/x").headers["location"] == "HTTPS://Upper.Example"
        assert httpx.get(base + "/port/").headers["location"] == "http://127.0.0.1:8080/docs/"
        assert httpx.get(base + "/ipv6/").headers["location"] == "http://[::1]:9/"
        query = httpx.get(base + "/query/")
        assert query.headers["location"] == "https://q.example/?from=pythonhosted#top"
        for number in range(len(HOSTILE)):
            response = httpx.get(f"{base}/bad{number}/")
            assert "location" not in response.headers, HOSTILE[number]
            assert response.status_code == (200 if number == 0 else 404)
            for name, value in SECURITY.items():
                assert response.headers[name] == value
        assert httpx.get(base + "/bad0/").content == b"the project's own docs"
        assert httpx.get(base + "/changed/").status_code == 404
        assert metric(base, "conveyor_redirect_table_refused_lines") == len(HOSTILE) + 1
        assert metric(base, "conveyor_redirect_table_entries") == len(GOOD)
        assert metric(base, "conveyor_redirect_table_current") == 1
    reports = [record.getMessage() for record in caplog.records]
    assert len(reports) == len(HOSTILE) + 1
    first_bad = len(GOOD) + 1
    assert reports[0] == (
        f"redirects.txt line {first_bad}: target for 'bad0' must be an http(s) URL, "
        "got 'javascript:alert(document.domain)'; skipping that line"
    )
    crlf = HOSTILE.index("https://docs.example\r\nSet-Cookie: session=stolen")
    assert reports[crlf] == (
        f"redirects.txt line {first_bad + crlf}: target for 'bad{crlf}' must not contain control "
        "characters or spaces, got 'https://docs.example\\r\\nSet-Cookie: session=stolen'; "
        "skipping that line"
    )
    assert all("\n" not in report and "\r" not in report for report in reports)


@pytest.mark.parametrize("target", HOSTILE)
def test_docs_redirect_refuses_what_the_service_would_skip(tmp_path: Path, target: str) -> None:
    store = f"file://{tmp_path}/docs"
    put(store, REDIRECTS_KEY, line("kept", "https://kept.example"))
    code, output = cli("docs", "redirect", "--store", store, "proj", target)
    assert code == 1
    assert output.startswith("Error: base URI must ")
    assert len(output.strip().splitlines()) == 1
    assert stored_table(store) == line("kept", "https://kept.example")
    # The reader refuses exactly the same.
    assert parse_redirects(line("proj", target)).table == {}


def test_docs_redirect_keeps_others_refused_lines_and_fixes_its_own(tmp_path: Path) -> None:
    store = f"file://{tmp_path}/docs"
    hostile = line("evil", "//evil.example") + line("ok", "https://ok.example")
    put(store, REDIRECTS_KEY, hostile)
    code, output = cli("docs", "redirect", "--store", store, "proj", "https://proj.example")
    assert (code, output) == (
        1,
        "Error: redirects.txt line 1: target for 'evil' must be an http(s) URL, "
        "got '//evil.example'; fix it first\n",
    )
    assert stored_table(store) == hostile
    # The project's own refused line is what the command replaces or removes.
    assert cli("docs", "redirect", "--store", store, "--remove", "evil")[0] == 0
    assert stored_table(store) == line("ok", "https://ok.example")
    put(store, REDIRECTS_KEY, hostile)
    assert cli("docs", "redirect", "--store", store, "evil", "https://fixed.example")[0] == 0
    assert stored_table(store) == line("evil", "https://fixed.example") + line(
        "ok", "https://ok.example"
    )


def test_an_edit_is_served_within_seconds(docs_store: str, conveyor: ConveyorFactory) -> None:
    """With the default settings: the service checks the file's version every 2 s."""
    put(docs_store, "proj/index.html", b"proj docs")
    with conveyor(docs=docs_store) as base:
        assert httpx.get(base + "/proj/").status_code == 200

        def location() -> str | None:
            return httpx.get(base + "/proj/page.html").headers.get("location")

        code, output = cli("docs", "redirect", "--store", docs_store, "proj", "https://one.example")
        assert (code, output) == (0, "proj: redirect set, takes effect within 3 s\n")
        wait_until(lambda: location() == "https://one.example")
        two = ("proj", "https://two.example", "--include-path")
        assert cli("docs", "redirect", "--store", docs_store, *two)[0] == 0
        wait_until(lambda: location() == "https://two.example/page.html")
        assert cli("docs", "redirect", "--store", docs_store, "--remove", "proj")[0] == 0
        wait_until(lambda: httpx.get(base + "/proj/").status_code == 200)
        assert httpx.get(base + "/proj/").content == b"proj docs"
        assert metric(base, "conveyor_redirect_table_reloads_total") == 3


def test_an_oversized_table_is_refused_and_the_old_one_kept(
    tmp_path: Path, conveyor: ConveyorFactory
) -> None:
    store = f"file://{tmp_path}/docs"
    limit = 2**20
    put(store, REDIRECTS_KEY, line("proj", "https://proj.example"))
    with conveyor(docs=store, redirects_reload_interval=0.1, redirects_max_bytes=limit) as base:
        assert httpx.get(base + "/proj/").headers["location"] == "https://proj.example"
        filler = line("other", "https://other.example")
        put(store, REDIRECTS_KEY, filler * (limit // len(filler) + 1))
        wait_until(lambda: metric(base, "conveyor_redirect_table_current") == 0)
        assert metric(base, 'conveyor_redirect_table_failures_total{reason="malformed"}') == 1
        assert httpx.get(base + "/proj/").headers["location"] == "https://proj.example"
        assert httpx.get(base + "/other/").status_code == 404
    result = CliRunner().invoke(
        main,
        ["docs", "redirect", "--store", store, "proj", "https://x.example"],
        env={"PYTHONHOSTED_CONVEYOR__REDIRECTS_MAX_BYTES": str(limit)},
    )
    assert (result.exit_code, result.output) == (
        1,
        f"Error: redirects.txt is malformed, fix it first: larger than {limit} bytes\n",
    )


def test_a_table_of_140000_projects_is_served(tmp_path: Path, conveyor: ConveyorFactory) -> None:
    """17.8 MB of lines as real tables write them: over the 16 MB the service used to accept,
    so the whole table was refused. Each request is one dict lookup whatever the size."""
    store = f"file://{tmp_path}/docs"
    table = b"".join(
        line(f"project-number-{n}", f"https://project-number-{n}.readthedocs.io/en/latest", True)
        for n in range(140_000)
    )
    assert len(table) > 16 * 2**20
    put(store, REDIRECTS_KEY, table)
    with conveyor(docs=store) as base:
        assert metric(base, "conveyor_redirect_table_entries") == 140_000
        last = httpx.get(base + "/project-number-139999/api.html", timeout=60).headers["location"]
        assert last == "https://project-number-139999.readthedocs.io/en/latest/api.html"
    code, output = cli(
        "docs", "redirect", "--store", store, "project-number-7", "https://x.example"
    )
    assert (code, output) == (0, "project-number-7: redirect set, takes effect within 3 s\n")


def test_refused_lines_are_logged_a_hundred_then_counted(
    tmp_path: Path, conveyor: ConveyorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A line each for 100,000 refused targets was 100,000 error lines per version."""
    store = f"file://{tmp_path}/docs"
    bad = b"".join(line(f"p{n}", "javascript:alert(1)") for n in range(1_000))
    put(store, REDIRECTS_KEY, bad + line("good", "https://good.example"))
    with conveyor(docs=store) as base:
        assert metric(base, "conveyor_redirect_table_refused_lines") == 1_000
        assert httpx.get(base + "/good/").headers["location"] == "https://good.example"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 101
    assert errors[0].startswith("redirects.txt line 1: target for 'p0' ")
    assert errors[-1] == "redirects.txt: 900 more lines refused for their target"


def test_requests_are_answered_while_a_table_is_parsed(
    tmp_path: Path, conveyor: ConveyorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The largest table takes about a second of CPU to parse; that runs beside the requests,
    not in front of them (on the event loop it held up every request of the process, all of
    `pythonhosted serve`'s services, for 2.5 s). The parse here waits until a request has
    been answered: with the parse on the loop, nothing is answered and the request fails."""
    parsing, answered = threading.Event(), threading.Event()
    real = redirects_module.parse_redirects

    def held_parse(data: bytes) -> RedirectFile:
        parsing.set()
        answered.wait(120)
        return real(data)

    monkeypatch.setattr(redirects_module, "parse_redirects", held_parse)
    store = f"file://{tmp_path}/docs"
    put(store, "proj/index.html", b"proj docs")
    with conveyor(docs=store, redirects_reload_interval=0.1) as base:
        # Started: the first load (at startup, before any request is served) is behind us.
        assert httpx.get(base + "/proj/").status_code == 200
        put(store, REDIRECTS_KEY, line("proj", "https://proj.example"))
        assert parsing.wait(30)
        try:
            during = httpx.get(base + "/proj/")  # times out at 60 s if held
        finally:
            answered.set()
        assert (during.status_code, during.content) == (200, b"proj docs")
        wait_until(lambda: httpx.get(base + "/proj/").headers.get("location") is not None)


def test_a_missing_table_is_logged_when_it_goes_missing_not_at_every_check(
    tmp_path: Path, conveyor: ConveyorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The table is checked every 2 s; a conveyor without a redirects.txt logged "absent" at
    every check, 43,200 lines a day (and into the output of a command run beside it). The
    failures are still counted at every check."""
    caplog.set_level(logging.INFO, logger="pythonhosted.conveyor.redirects")
    store = f"file://{tmp_path}/docs"
    missing = 'conveyor_redirect_table_failures_total{reason="missing"}'
    with conveyor(docs=store, redirects_reload_interval=0.02) as base:
        wait_until(lambda: metric(base, missing) >= 10)
        put(store, REDIRECTS_KEY, line("good", "https://good.example"))
        wait_until(lambda: metric(base, "conveyor_redirect_table_current") == 1)
        counted = metric(base, missing)
        asyncio.run(open_store(store).delete(REDIRECTS_KEY))
        wait_until(lambda: metric(base, missing) >= counted + 10)
        assert httpx.get(base + "/good/").headers["location"] == "https://good.example"
    assert [r.getMessage() for r in caplog.records if r.name == redirects_module.__name__] == [
        "redirects.txt is absent; keeping 0 redirects",
        "redirect table loaded: 1 projects, 0 lines refused",
        "redirects.txt is absent; keeping 1 redirects",
    ]
