"""Big JSON API answers: read into files while they arrive, in bounded memory, same rules."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.conveyor import ConveyorFactory
from support.jsonapi import FILES_HOST, FakeJsonApi, file_entry
from support.memory import peak, settled
from support.processes import PYTHONHOSTED, started

LOOKUPS = 32
# The bytes are mostly in one long field per file, so the test costs little CPU (a lookup's
# CPU goes by JSON tokens, not bytes); BENCHMARKS.md measures answers shaped like PyPI's.
FILES = 1000
PADDING = 10_000  # a file's other fields (digests, times…), as one string
DESCRIPTION = 64 * 1024  # ``info.description``
# Held and parsed whole, these 32 answers grew conveyor by 240-262 MiB (2 runs); read while
# they arrive, by 28 MiB (what it keeps of them).
BOUND = 96 * 2**20


def target(filename: str) -> str:
    return f"{FILES_HOST}/packages/ab/cd/{filename}"


def big_answer() -> bytes:
    """~10 MB: a description and 1,000 padded files, two per release, in ``urls`` too."""
    releases: dict[str, list[dict[str, Any]]] = {
        f"1.{n}": [
            {**file_entry(f"big-1.{n}.tar.gz", "source"), "comment_text": "x" * PADDING},
            {**file_entry(f"big-1.{n}-py3-none-any.whl", "py3"), "comment_text": "x" * PADDING},
        ]
        for n in range(FILES // 2)
    }
    info = {"name": "big", "description": "d" * DESCRIPTION}
    return orjson.dumps({"info": info, "releases": releases, "urls": releases["1.0"]})


async def lookups(base: str, paths: list[str]) -> list[tuple[int, str | None]]:
    async with aiohttp.ClientSession() as client:

        async def one(path: str) -> tuple[int, str | None]:
            async with client.get(f"{base}{path}", allow_redirects=False) as response:
                return response.status, response.headers.get("Location")

        return await asyncio.gather(*(one(path) for path in paths))


def test_concurrent_big_answers_stay_in_bounded_memory(
    api: tuple[FakeJsonApi, str], tmp_path: Path
) -> None:
    """32 cold lookups at once of distinct projects whose answers are ~10 MB each: conveyor
    grows by what it keeps of them, not by 32 whole documents and their parses."""
    fake, api_url = api
    body = big_answer()
    assert len(body) > 10 * 10**6
    names = [f"big-{n:02}" for n in range(LOOKUPS)]
    fake.raw.update(dict.fromkeys(names, body))
    bind = Bind("127.0.0.1", free_port())
    argv = [*PYTHONHOSTED, "conveyor", "serve", "--docs", f"file://{tmp_path}/docs"]
    argv += ["--json-api", api_url, "--bind", f"{bind.host}:{bind.port}"]
    # Sending 320 MB through the fake's one thread takes seconds on a loaded machine.
    env = {**os.environ, "PYTHONHOSTED_CONVEYOR__UPSTREAM_TIMEOUT": "120"}
    with started(argv, env=env) as server:
        wait_for_port(bind, timeout=60, process=server)
        assert httpx.get(f"http://{bind.host}:{bind.port}/_health").status_code == 200
        before = settled(server.pid)
        files = [f"big-1.{n * 7}.tar.gz" for n in range(LOOKUPS)]
        paths = [
            f"/packages/source/b/{name}/{file}" for name, file in zip(names, files, strict=True)
        ]
        answers = asyncio.run(lookups(f"http://{bind.host}:{bind.port}", paths))
        grown = peak(server.pid) - before
    assert answers == [(302, target(file)) for file in files]
    assert all(fake.count(name) == 1 for name in names)
    assert grown < BOUND, f"conveyor grew {grown / 2**20:.0f} MiB"


def padded(document: dict[str, Any]) -> bytes:
    """``document`` after a 300 KB ``info``: big enough to be read while it arrives."""
    return orjson.dumps({"info": {"description": "d" * 300_000}, **document})


def test_big_answers_skip_malformed_files_like_small_ones(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    fake, api_url = api
    kept = file_entry("kept-1.0.tar.gz", "source")
    signed = file_entry("kept-3.0.tar.gz", "source", has_sig=True)
    latest = file_entry("kept-4.0-py3-none-any.whl", "py3")
    malformed = [
        "kept-1.1.tar.gz",
        7,
        {**file_entry("kept-1.2.tar.gz", "source"), "python_version": 3},
        {**file_entry("kept-1.3.tar.gz", "source"), "url": "javascript:alert(1)"},
        {**file_entry("kept-1.4.tar.gz", "source"), "url": {"href": target("kept-1.4.tar.gz")}},
        {k: v for k, v in file_entry("kept-1.5.tar.gz", "source").items() if k != "url"},
    ]
    releases = {"1.0": [kept, *malformed], "2.0": "not a list", "3.0": [signed]}
    fake.raw["kept"] = padded({"releases": releases, "urls": [latest], "more": [kept]})
    with conveyor(json_api=api_url) as base:

        def get(path: str) -> tuple[int, str | None]:
            response = httpx.get(f"{base}/packages/{path}")
            return response.status_code, response.headers.get("location")

        assert get("source/k/kept/kept-1.0.tar.gz") == (302, target("kept-1.0.tar.gz"))
        assert get("source/k/kept/kept-3.0.tar.gz.asc") == (302, target("kept-3.0.tar.gz") + ".asc")
        assert get("py3/k/kept/kept-4.0-py3-none-any.whl") == (
            302,
            target("kept-4.0-py3-none-any.whl"),
        )
        for n in range(1, 6):
            assert get(f"source/k/kept/kept-1.{n}.tar.gz") == (404, None)
    assert fake.count("kept") == 1


def test_big_invalid_answers_are_503(
    api: tuple[FakeJsonApi, str], conveyor: ConveyorFactory
) -> None:
    fake, api_url = api
    whole = padded({"releases": {"1.0": [file_entry("bad-1.0.tar.gz", "source")]}, "urls": []})
    fake.raw["truncated"] = whole[:-1]
    fake.raw["trailing"] = whole + b"{}"
    fake.raw["broken"] = whole.replace(b'"releases"', b"releases")
    # A lone low surrogate: orjson refuses it, yajl passes it on as bytes that are not UTF-8.
    fake.raw["surrogate"] = whole.replace(b"bad-1.0.tar.gz", rb"bad-1.0.tar.gz\udc00")
    with conveyor(json_api=api_url, upstream_max_bytes=len(whole) - 1) as small:
        assert httpx.get(f"{small}/packages/source/t/trailing/bad-1.0.tar.gz").status_code == 503
    with conveyor(json_api=api_url) as base:
        for name in ("truncated", "trailing", "broken", "surrogate"):
            response = httpx.get(f"{base}/packages/source/{name[0]}/{name}/bad-1.0.tar.gz")
            assert response.status_code == 503, name
