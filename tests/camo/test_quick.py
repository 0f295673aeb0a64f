"""camo's quick answers (a memory-cache hit written inside the connection,
``pythonhosted.web.h1``) are its ASGI answers: the same bytes but the ``Date``, the same
counts, and never an answer camo would refuse over ASGI.

A request with ``If-None-Match`` that matches nothing is never answered quickly and gets the
same 200 from the cache: that is the ASGI answer each quick one is compared with.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from support.sockets import exchange_raw

DATE = re.compile(rb"\r\ndate: [^\r]+")
AGE = re.compile(rb"\r\nage: \d+")


def exchange(base: str, method: str, path: str, headers: dict[str, str]) -> bytes:
    """The whole response, as sent, without its Date and Age (both move with the clock)."""
    data = exchange_raw(base, method, path, headers)
    assert DATE.search(data), data[:400]
    return AGE.sub(b"", DATE.sub(b"", data))


def counts(camo: Any) -> dict[str, float]:
    wanted = {
        "quick": "camo_quick_answers_total",
        "hit": 'camo_cache_responses_total{result="hit"}',
        "ok": 'camo_responses_total{code="200"}',
        "served": "camo_cache_served_bytes_total",
        "refused": 'camo_responses_total{code="404"}',
    }
    text = camo.client.get("/metrics").text
    found = {}
    for key, name in wanted.items():
        value = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        found[key] = float(value.group(1)) if value else 0.0
    return found


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_quick_answer_is_the_asgi_answer(
    make_camo: Any, upstream: Any, tmp_path: Path, method: str
) -> None:
    target = f"{upstream.base}/png"
    with make_camo(cache_dir=tmp_path / "cache") as camo:
        path = camo.url(target).removeprefix(camo.base)
        assert camo.get(target).headers["x-camo-cache"] == "MISS"  # stored, body in memory
        before = counts(camo)
        quick = exchange(camo.base, method, path, {})
        again = exchange(camo.base, method, path + "?ignored=1", {})  # the path form's query
        middle = counts(camo)
        asgi = exchange(camo.base, method, path, {"If-None-Match": '"nothing"'})
        after = counts(camo)
    assert quick == again == asgi
    head, _, body = quick.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nx-camo-cache: HIT\r\n" in head
    assert body == (upstream.png if method == "GET" else b"")
    size = len(upstream.png) if method == "GET" else 0
    one = {"quick": 1, "hit": 1, "ok": 1, "served": size, "refused": 0}
    assert {key: middle[key] - before[key] for key in one} == {k: 2 * v for k, v in one.items()}
    assert {key: after[key] - middle[key] for key in one} == {**one, "quick": 0}


def test_only_path_form_memory_hits_are_quick(
    make_camo: Any, upstream: Any, tmp_path: Path
) -> None:
    """The legacy query form, a range, a loop's Via, a stale entry: over ASGI, as before."""
    target = f"{upstream.base}/png"
    with make_camo(cache_dir=tmp_path / "cache", cache_default_ttl=1) as camo:
        path = camo.url(target).removeprefix(camo.base)
        digest = path.split("/")[1]
        legacy = f"/{digest}?{urlencode({'url': target})}"
        camo.get(target)
        before = counts(camo)
        answers = [
            exchange(camo.base, "GET", legacy, {}),
            exchange(camo.base, "GET", path, {"Range": "bytes=0-9"}),
            exchange(camo.base, "GET", path, {"Via": "1.1 pythonhosted-camo"}),
        ]
        assert counts(camo)["quick"] == before["quick"]
    assert answers[0].startswith(b"HTTP/1.1 200 ") and b"x-camo-cache: HIT" in answers[0]
    assert answers[1].startswith(b"HTTP/1.1 200 ")  # relayed: this upstream sends it whole
    assert b"x-camo-cache" not in answers[1].partition(b"\r\n\r\n")[0]
    assert answers[2].startswith(b"HTTP/1.1 404 "), answers[2][:200]


def test_a_refused_url_in_memory_is_refused_every_time(
    make_camo: Any, upstream: Any, tmp_path: Path
) -> None:
    """Cached through a redirect; a rule added since against the final URL refuses it. The
    first ask reads the entry from disk into memory; the later ones find it there, and are
    refused just the same."""
    final = f"{upstream.base}/png"
    via = f"{upstream.base}/redirect?{urlencode({'to': final})}"
    rules = tmp_path / "rules.txt"
    rules.write_text("deny||*||/png\n")
    with make_camo(cache_dir=tmp_path / "cache") as camo:
        assert camo.get(via).status_code == 200
    with make_camo(cache_dir=tmp_path / "cache", filter_ruleset=rules) as camo:
        statuses = [camo.get(via).status_code for _ in range(3)]
        assert counts(camo)["quick"] == 0
    assert statuses == [404, 404, 404]


def test_a_hit_is_not_quick_where_camo_closes_every_connection(
    make_camo: Any, upstream: Any, tmp_path: Path
) -> None:
    """go-camo's --no-fk: camo's own ``Connection: close`` is for the server to act on."""
    target = f"{upstream.base}/png"
    with make_camo(cache_dir=tmp_path / "cache", disable_keepalives_frontend=True) as camo:
        camo.get(target)
        answer = exchange(camo.base, "GET", camo.url(target).removeprefix(camo.base), {})
        assert counts(camo)["quick"] == 0
    assert b"\r\nx-camo-cache: HIT\r\n" in answer
    assert answer.lower().count(b"\r\nconnection: close\r\n") == 1


def test_methods_but_get_and_head_are_405_with_the_cache_as_without(
    make_camo: Any, upstream: Any, tmp_path: Path
) -> None:
    """With its cache camo runs on our own server, whose parser (llhttp) knows no ``BREW``
    and no 6 KB method: such requests are parsed again and camo answers them as granian let
    it without the cache."""
    target = f"{upstream.base}/png"
    with make_camo(cache_dir=tmp_path / "cache") as camo:
        for method, shown in (
            ("POST", "POST"),
            ("BREW", "BREW"),
            ("GET" * 2000, "GETGETGETGETGETG..."),
        ):
            response = camo.client.request(method, camo.url(target))
            assert response.status_code == 405
            assert response.headers["allow"] == "GET, HEAD"
            assert response.headers["x-camo-error"] == f"method {shown} not allowed"
    assert upstream.hits == []
