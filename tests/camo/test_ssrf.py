"""Destinations are judged on the address actually dialled (spec rules 5-7).

The upstream listens on 127.0.0.2. Camo instances allow either 127.0.0.2/32 (so a 200 proves
a spelling was read as that address) or only 127.0.0.1/32 (so the same URL must be refused).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest

from pythonhosted.camo.errors import Refused
from pythonhosted.camo.http1 import Connection, open_connection
from pythonhosted.camo.policy import AddressPolicy
from pythonhosted.camo.rules import Rules
from pythonhosted.camo.upstream import Upstream as Client
from pythonhosted.camo.upstream import UrlChecks

if TYPE_CHECKING:
    from conftest import Camo, CamoFactory, Upstream

# 127.0.0.2 spelled the ways browsers and inet_aton accept
SPELLINGS_OF_127_0_0_2 = [
    "2130706434",
    "0177.0.0.2",
    "0x7f.0.0.2",
    "0x7f000002",
    "127.2",
    "127.0.2",
]


@pytest.fixture(scope="module")
def strict(make_camo: CamoFactory) -> Iterator[Camo]:
    """Camo allowing only 127.0.0.1/32, where nothing listens for it."""
    with make_camo(allow_networks=["127.0.0.1/32"]) as camo:
        yield camo


def refused(response: Any, reason_part: str) -> bool:
    return response.status_code == 404 and reason_part in response.headers["x-camo-error"]


def test_allowed_upstream_is_fetched(camo: Camo, upstream: Upstream) -> None:
    response = camo.get(upstream.base + "/png")
    assert response.status_code == 200
    assert response.content == upstream.png


def test_loopback_refused_when_only_another_address_allowed(
    make_camo: CamoFactory, upstream: Upstream
) -> None:
    with make_camo(allow_networks=["127.0.0.1/32"]) as camo:
        response = camo.get(upstream.base + "/png")
        assert refused(response, "address 127.0.0.2 is in refused range 127.0.0.0/8")
    assert upstream.hits == []


def test_default_policy_refuses_loopback(make_camo: CamoFactory, upstream: Upstream) -> None:
    with make_camo(allow_networks=[]) as camo:
        assert refused(camo.get(upstream.base + "/png"), "127.0.0.0/8")
    assert upstream.hits == []


@pytest.mark.parametrize("spelling", SPELLINGS_OF_127_0_0_2)
def test_legacy_ipv4_spellings_are_addresses(
    make_camo: CamoFactory, camo: Camo, upstream: Upstream, spelling: str
) -> None:
    url = f"http://{spelling}:{upstream.port}/png"
    assert camo.get(url).status_code == 200  # read as 127.0.0.2, which is allowed here
    with make_camo(allow_networks=["127.0.0.1/32"]) as strict:
        assert refused(strict.get(url), "address 127.0.0.2 is in refused range")
    assert len(upstream.hits) == 1


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("[::1]", "address ::1 is in refused range ::1/128"),
        ("[::ffff:127.0.0.2]", "address ::ffff:7f00:2 embeds 127.0.0.2"),
        ("[::ffff:a00:1]", "embeds 10.0.0.1"),
        ("[64:ff9b::a9fe:a9fe]", "embeds 169.254.169.254"),
        ("[fe80::1]", "fe80::/10"),
        ("[fd12::1]", "fc00::/7"),
        ("169.254.169.254", "169.254.0.0/16"),
        ("0.0.0.0", "0.0.0.0/8"),
        ("100.64.0.1", "100.64.0.0/10"),
        ("224.0.0.1", "224.0.0.0/4"),
        ("255.255.255.255", "240.0.0.0/4"),
        ("10.0.0.1", "10.0.0.0/8"),
        ("172.16.0.1", "172.16.0.0/12"),
        ("192.168.0.1", "192.168.0.0/16"),
    ],
)
def test_refused_literals(strict: Camo, host: str, reason: str) -> None:
    assert refused(strict.get(f"http://{host}:9/x.png"), reason)


def test_invalid_numeric_host(camo: Camo) -> None:
    response = camo.get("http://1.2.3.256/x.png")
    assert refused(response, "is not a valid IPv4 address")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("metadata.test", "metadata.test: address 169.254.169.254 is in refused range"),
        ("private.test", "private.test: address 10.0.0.1 is in refused range 10.0.0.0/8"),
        ("self.test", "self.test: address 127.0.0.1 is in refused range"),
    ],
)
def test_names_resolving_to_refused_addresses(
    camo: Camo, upstream: Upstream, name: str, reason: str
) -> None:
    assert refused(camo.get(f"http://{name}:{upstream.port}/png"), reason)
    assert upstream.hits == []


def test_name_with_mixed_addresses_connects_only_to_the_allowed_one(
    camo: Camo, upstream: Upstream
) -> None:
    response = camo.get(f"http://mixed.test:{upstream.port}/png")
    assert response.status_code == 200
    assert upstream.hits[0].headers["host"] == f"mixed.test:{upstream.port}"


def test_unresolvable_name_is_404(camo: Camo) -> None:
    response = camo.get("http://nowhere.test/x.png")
    assert response.status_code == 404  # as go-camo answers a name that does not resolve
    assert response.headers["x-camo-error"] == "cannot resolve nowhere.test"


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/png",
        "http://metadata.test/latest/meta-data/",
        "http://[::1]:{port}/png",
        "ftp://images.test/x.png",
        "http://user:pw@images.test:{port}/png",
    ],
)
def test_redirect_hops_are_revalidated(camo: Camo, upstream: Upstream, target: str) -> None:
    location = target.format(port=upstream.port)
    response = camo.get(f"{upstream.base}/redirect?{urlencode({'to': location})}")
    assert response.status_code == 404
    assert [hit.path for hit in upstream.hits] == ["/redirect"]


def test_redirects_followed_to_the_limit(camo: Camo, upstream: Upstream) -> None:
    ok = camo.client.get(camo.url(f"{upstream.base}/redirect?hops=3&to=/png"))
    assert ok.status_code == 200
    assert ok.content == upstream.png
    upstream.hits.clear()
    too_many = camo.client.get(camo.url(f"{upstream.base}/redirect?hops=4&to=/png"))
    assert too_many.status_code == 404
    assert too_many.headers["x-camo-error"] == "more than 3 redirects"
    assert len(upstream.hits) == 4


def test_redirect_to_allowed_name(camo: Camo, upstream: Upstream) -> None:
    location = f"http://images.test:{upstream.port}/png"
    response = camo.get(f"{upstream.base}/redirect?{urlencode({'to': location})}")
    assert response.status_code == 200
    assert upstream.hits[-1].headers["host"] == f"images.test:{upstream.port}"


def test_credential_urls(make_camo: CamoFactory, camo: Camo, upstream: Upstream) -> None:
    url = f"http://user:pw@{upstream.base.removeprefix('http://')}/echo"
    assert refused(camo.get(url), "URLs with credentials are not allowed")
    assert upstream.hits == []
    with make_camo(allow_credential_urls=True) as permissive:
        response = permissive.get(url)
    assert response.status_code == 200
    assert upstream.hits[0].headers["authorization"] == "Basic dXNlcjpwdw=="


def test_filter_rules(make_camo: CamoFactory, upstream: Upstream, tmp_path: Any) -> None:
    ruleset = tmp_path / "rules.txt"
    ruleset.write_text("# only our image host\nallow|host|i|IMAGES.test\ndeny|path||/svg*\n")
    with make_camo(filter_ruleset=ruleset) as camo:
        assert camo.get(f"http://images.test:{upstream.port}/png").status_code == 200
        assert refused(
            camo.get(f"http://images.test:{upstream.port}/svg"),
            "images.test/svg matches deny rule deny|path||/svg*",
        )
        assert refused(camo.get(upstream.base + "/png"), "127.0.0.2/png matches no allow rule")
    assert [hit.path for hit in upstream.hits] == ["/png"]


def test_filter_rules_reject_bad_lines() -> None:
    with pytest.raises(ValueError, match="filter rule line 2"):
        Rules.parse("allow|host||*.ok\nallow|url||*\n")


class DialerSpy:
    """Records every dial the client makes (one per connection attempt) and every lookup."""

    def __init__(self, zone: dict[str, list[str]]) -> None:
        self.zone = zone
        self.lookups: list[str] = []
        self.connects: list[Any] = []

    async def lookup(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        return self.zone[host]

    async def dial(
        self,
        factory: Callable[[], Connection],
        address: str,
        port: int,
        context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> tuple[asyncio.BaseTransport, Connection]:
        self.connects.append((address, port))
        return await open_connection(factory, address, port, context, server_hostname)


def fetch(spy: DialerSpy, url: str, allow: Sequence[str] = ()) -> int | Refused:
    """Run one upstream fetch through the client layer with the spy as resolver and dialer."""

    async def scenario() -> int | Refused:
        checks = UrlChecks(AddressPolicy.allowing(allow), Rules(), allow_credentials=False)
        client = Client(
            checks,
            max_redirects=3,
            connect_timeout=5,
            lookup=spy.lookup,
            dial=spy.dial,
        )
        try:
            response = await client.open("GET", url, {})
            response.release()
            return response.status
        except Refused as refusal:
            return refusal
        finally:
            await client.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://metadata.test/latest/meta-data/",
    ],
)
def test_metadata_address_never_dialled(url: str) -> None:
    spy = DialerSpy({"metadata.test": ["169.254.169.254"]})
    result = fetch(spy, url)
    assert isinstance(result, Refused)
    assert result.reason == "address"
    assert "169.254.169.254" in result.detail
    assert spy.connects == []
    assert spy.lookups == (["metadata.test"] if "metadata.test" in url else [])


def test_connection_goes_to_the_checked_address(upstream: Upstream) -> None:
    """One lookup, one socket, aimed at the address the policy passed: no second lookup."""
    spy = DialerSpy({"rebind.test": ["10.9.9.9", "127.0.0.2"]})
    assert fetch(spy, f"http://rebind.test:{upstream.port}/png", ["127.0.0.2/32"]) == 200
    assert spy.lookups == ["rebind.test"]
    assert spy.connects == [("127.0.0.2", upstream.port)]


def test_stub_zone_never_points_off_this_machine(lookup: Callable[..., Any]) -> None:
    """Guard for the suite itself: every stub address is loopback or refused by default."""
    for name in ("images.test", "mixed.test", "metadata.test", "private.test", "self.test"):
        for address in asyncio.run(lookup(name, 80)):
            ip = ipaddress.ip_address(address)
            assert ip.is_loopback or AddressPolicy().refusal(ip) is not None


def test_repeated_requests_are_checked_every_time(camo: Camo, upstream: Upstream) -> None:
    """Verified signatures and checked first hops are cached; redirect hops and refused
    addresses must still be judged on every request, not only the first."""
    bounce = (
        f"{upstream.base}/redirect?{urlencode({'to': f'http://127.0.0.1:{upstream.port}/png'})}"
    )
    for _ in range(3):
        upstream.hits.clear()
        assert camo.get(bounce).status_code == 404
        assert [hit.path for hit in upstream.hits] == ["/redirect"]
        assert refused(camo.get(f"http://self.test:{upstream.port}/png"), "127.0.0.1")
        assert camo.get(upstream.base + "/png").content == upstream.png
