"""The tests' HTTP clients wait for a starved server (tests/conftest.py): at load 10-20 a right
answer took longer than httpx's own 5 s, and a run failed on a test that had nothing wrong."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pythonhosted.web.server import free_port

PATIENT = httpx.Timeout(60.0)


def test_a_client_a_test_makes_waits_a_minute() -> None:
    with httpx.Client() as client:
        assert client.timeout == PATIENT


def test_an_async_client_a_test_makes_waits_a_minute() -> None:
    async def timeout() -> httpx.Timeout:
        async with httpx.AsyncClient() as client:
            return client.timeout

    assert asyncio.run(timeout()) == PATIENT


@pytest.mark.parametrize("method", ["get", "head", "options", "delete", "post", "put", "patch"])
def test_httpxs_functions_wait_a_minute(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each function makes a client of its own: the timeout it is given is that client's."""
    made: list[httpx.Timeout] = []
    original = httpx.Client.__init__

    def recording(self: httpx.Client, **options: object) -> None:
        made.append(httpx.Timeout(options["timeout"]))  # type: ignore[arg-type]
        original(self, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.Client, "__init__", recording)
    with pytest.raises(httpx.ConnectError):  # nothing listens there
        getattr(httpx, method)(f"http://127.0.0.1:{free_port()}/")
    assert made == [PATIENT]
