"""The event line format: exact text, and no field can break the line or the field count."""

from __future__ import annotations

from pythonhosted.logline import download_line, served_download_lines, served_line, simple_line

TS = 1610052894.0  # Thu, 07 Jan 2021 20:54:54 GMT


def test_download_line_exact() -> None:
    line = download_line(
        timestamp=TS,
        country="US",
        url="/packages/aa/bb/cc/foo-1.0.tar.gz",
        tls_protocol="TLSv1.3",
        tls_cipher="TLS_AES_128_GCM_SHA256",
        project="foo",
        version="1.0",
        package_type="sdist",
        user_agent="pip/21.0 {}",
    )
    assert line == (
        "download|Thu, 07 Jan 2021 20:54:54 GMT|US|/packages/aa/bb/cc/foo-1.0.tar.gz|TLSv1.3|"
        "TLS_AES_128_GCM_SHA256|foo|1.0|sdist|pip/21.0 {}"
    )


def test_nulls_and_hostile_fields() -> None:
    line = download_line(
        timestamp=TS,
        country=None,
        url="/packages/x|y\n.whl",
        tls_protocol=None,
        tls_cipher="",
        project="a|b",
        version=None,
        package_type=None,
        user_agent="evil|agent\r\nnext|line",
    )
    assert "\n" not in line and "\r" not in line
    assert line == (
        "download|Thu, 07 Jan 2021 20:54:54 GMT||/packages/x%7Cy%0A.whl|(null)|(null)|a%7Cb|"
        "(null)|(null)|evil|agent%0D%0Anext|line"
    )
    assert line.split("|", 9)[9] == "evil|agent%0D%0Anext|line"


def test_simple_line_exact() -> None:
    line = simple_line(
        timestamp=TS,
        country="DE",
        url="/simple/foo/",
        tls_protocol=None,
        tls_cipher=None,
        user_agent=None,
    )
    assert line == "simple|Thu, 07 Jan 2021 20:54:54 GMT|DE|/simple/foo/|(null)|(null)||||(null)"


def test_served_download_lines_exact() -> None:
    """The facts in a served line of their own, then the reference's download line as it
    was: one string, so the event log keeps the two adjacent."""
    lines = served_download_lines(
        served_line(206, 16384, True, 4096),
        timestamp=TS,
        country="US",
        url="/packages/aa/bb/cc/foo-1.0.tar.gz",
        tls_protocol=None,
        tls_cipher=None,
        project="foo",
        version="1.0",
        package_type="sdist",
        user_agent="uv/0.13.8 {}",
    )
    assert lines == (
        "served|206|16384|1|4096|||||\n"
        "download|Thu, 07 Jan 2021 20:54:54 GMT|US|/packages/aa/bb/cc/foo-1.0.tar.gz|(null)|"
        "(null)|foo|1.0|sdist|uv/0.13.8 {}"
    )
    assert lines.split("\n")[1] == download_line(
        timestamp=TS,
        country="US",
        url="/packages/aa/bb/cc/foo-1.0.tar.gz",
        tls_protocol=None,
        tls_cipher=None,
        project="foo",
        version="1.0",
        package_type="sdist",
        user_agent="uv/0.13.8 {}",
    )
