"""The edge's quick answers (written inside the connection, ``pythonhosted.web.h1``) are its
ASGI answers: the same bytes but the ``Date``, and the same download lines.

A request with ``X-Force-Backend`` (without the admin secret, so the handler ignores it) is
never answered quickly: that is the ASGI answer each quick one is compared with.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from support.edge import SAMPLES, EdgeFactory, download_lines, seed
from support.sockets import exchange_raw

WHEEL = SAMPLES["wheel"]
DATE = re.compile(rb"\r\ndate: [^\r]+")


def exchange(base_url: str, method: str, headers: dict[str, str]) -> bytes:
    """The whole response, as sent, without its Date."""
    data = exchange_raw(base_url, method, WHEEL.path, headers)
    assert DATE.search(data), data[:400]
    return DATE.sub(b"", data)


def quick_answers(base_url: str) -> int:
    metrics = httpx.get(base_url + "/metrics").text
    found = re.search(r"^files_quick_answers_total (\S+)$", metrics, re.MULTILINE)
    assert found is not None, metrics
    return int(float(found.group(1)))


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {}),
        ("HEAD", {}),
        ("GET", {"Range": "bytes=-100"}),
        ("GET", {"Range": "bytes=10-19"}),
        ("GET", {"X-Forwarded-Proto": "https", "User-Agent": "uv/0.5"}),
        ("HEAD", {"X-Forwarded-Proto": "https"}),
    ],
)
def test_a_quick_answer_is_the_asgi_answer(
    edge: EdgeFactory, tmp_path: Path, method: str, headers: dict[str, str]
) -> None:
    primary = f"file://{tmp_path}/primary"
    seed(primary)
    logs = tmp_path / "logs"
    with edge(primary=primary, logs=f"file://{logs}", trust_proxy_headers=True) as url:
        assert httpx.get(url + WHEEL.path).content == WHEEL.data  # located, body cached
        before = quick_answers(url)
        quick = exchange(url, method, headers)
        again = exchange(url, method, headers)  # a range's head and bytes kept from the first
        answered = quick_answers(url)
        asgi = exchange(url, method, {**headers, "X-Force-Backend": "PRIMARY"})
        after = quick_answers(url)
    assert (answered - before, after - answered) == (2, 0)
    assert quick == again == asgi
    assert quick.startswith(b"HTTP/1.1 206 " if "Range" in headers else b"HTTP/1.1 200 OK\r\n")
    if method == "GET":
        _warm, *lines = download_lines(logs)
        assert len({served for served, _ in lines}) == 1  # the served facts
        assert len({"|".join(line.split("|")[2:]) for _, line in lines}) == 1  # but the time
