"""The callback allow-list (SSRF guard): address rules, URL checks, name
resolution at submission and in the connection step of a delivery."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator, Callable

import httpcore
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model_services.jobs.callbacks import CallbackPolicy, CallbackRefused, GuardedBackend, refusal
from model_services.jobs.settings import JobSettings

# Networks webhooks must never reach by default, and the word the refusal uses.
REFUSED = [
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("fc00::/7", "private"),
    ("169.254.0.0/16", "link-local"),  # 169.254.169.254: cloud metadata
    ("fe80::/10", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("0.0.0.0/32", "unspecified"),
    ("::/128", "unspecified"),
    ("240.0.0.0/4", ""),  # reserved (255.255.255.255 is in it)
    ("100.64.0.0/10", "not a globally routable"),  # carrier-grade NAT
    ("0.0.0.0/8", ""),
    ("192.0.2.0/24", ""),  # documentation
    ("2001:db8::/32", ""),
    ("fec0::/10", "site-local"),
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e"]


def _refused_addresses() -> st.SearchStrategy[tuple[str, str, str]]:
    return st.sampled_from(REFUSED).flatmap(
        lambda item: st.ip_addresses(network=item[0]).map(lambda ip: (str(ip), item[0], item[1]))
    )


@given(_refused_addresses())
def test_addresses_in_refused_networks_are_refused_unless_allowed(case: tuple[str, str, str]) -> None:
    address, network, word = case
    ip = ipaddress.ip_address(address)
    why = CallbackPolicy().address_refusal(ip)
    assert why is not None and word in why
    assert CallbackPolicy.of([network]).address_refusal(ip) is None
    # Allowing some other network changes nothing.
    other = "203.0.113.0/24" if ip.version == 4 else "2001:db8:ffff::/48"
    assert (CallbackPolicy.of([other]).address_refusal(ip) is None) == (ip in ipaddress.ip_network(other))


@given(st.sampled_from([n for n, _ in REFUSED if ":" not in n]).flatmap(lambda n: st.ip_addresses(network=n)))
def test_ipv6_forms_of_a_refused_ipv4_address_are_refused(ip: ipaddress.IPv4Address) -> None:
    # A dual-stack socket reaches the IPv4 address behind ::ffff:a.b.c.d, a
    # NAT64 gateway the one behind 64:ff9b::a.b.c.d, a 6to4 relay 2002:aabb:ccdd::.
    forms = [
        ipaddress.IPv6Address(f"::ffff:{ip}"),
        ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(ip)),
        ipaddress.IPv6Address((0x2002 << 112) | (int(ip) << 80)),
    ]
    for form in forms:
        assert refusal(form) is not None, form
        # An allowed IPv4 network opens every form of its addresses.
        assert CallbackPolicy.of([f"{ip}/32"]).address_refusal(form) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal(ip) is None
    if ip.version == 4:
        assert refusal(ipaddress.IPv6Address(f"::ffff:{ip}")) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "must be an absolute http(s) URL"),
        ("file:///etc/passwd", "must be an absolute http(s) URL"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "must be an absolute http(s) URL"),
        ("/relative/path", "must be an absolute http(s) URL"),
        ("http://", "must be an absolute http(s) URL"),
        ("http://example.com:99999/x", "not a valid URL"),
        ("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
        ("https://user:pw@169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[fd00::1]/x", "fd00::1 is a private address"),
        ("http://bücher.example/x", "ASCII"),
    ],
)
def test_urls_refused_without_dns(url: str, why: str) -> None:
    with pytest.raises(CallbackRefused, match="callback_url") as info:
        CallbackPolicy().target(url)
    assert why in str(info.value)


def test_allowed_urls_give_their_host_and_port() -> None:
    policy = CallbackPolicy.of(["127.0.0.0/8"], ["hooks.internal"])
    assert policy.target("http://127.0.0.1:8080/hook") == ("127.0.0.1", 8080)
    assert policy.target("https://Hooks.Internal./x") == ("hooks.internal.", 443)
    assert policy.target("http://[2606:4700:4700::1111]/x") == ("2606:4700:4700::1111", 80)


def fake_dns(table: dict[str, list[str]]) -> Callable[[str, int], object]:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return table[host]

    return resolve


async def test_submission_resolves_names() -> None:
    dns = fake_dns(
        {
            "metadata.internal": ["169.254.169.254"],
            "mixed.example": ["93.184.215.14", "10.0.0.1"],  # any refused address refuses the name
            "public.example": ["93.184.215.14", "2606:4700:4700::1111"],
            "hooks.internal": ["10.0.0.9"],
        }
    )
    policy = CallbackPolicy.of(hosts=["hooks.internal"], resolve=dns)  # type: ignore[arg-type]
    with pytest.raises(
        CallbackRefused, match=re.escape("metadata.internal resolves to 169.254.169.254, which is a link-local")
    ):
        await policy.check_submission("http://metadata.internal/latest")
    with pytest.raises(CallbackRefused, match=re.escape("mixed.example resolves to 10.0.0.1")):
        await policy.check_submission("https://mixed.example/hook")
    await policy.check_submission("https://public.example/hook")
    await policy.check_submission("https://HOOKS.internal/hook")  # allowed by name, whatever it resolves to
    # Not resolvable now: accepted, delivery resolves (and checks) again.
    await policy.check_submission("https://not-yet.example/hook")


async def test_submission_tolerates_a_slow_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hang(host: str, port: int) -> list[str]:
        await asyncio.sleep(60)
        return []

    monkeypatch.setattr("model_services.jobs.callbacks._SUBMIT_RESOLVE_S", 0.01)
    await CallbackPolicy(resolve=hang).check_submission("https://slow.example/hook")


def test_settings_reject_a_bad_cidr() -> None:
    with pytest.raises(ValueError, match="allow CIDR 'not-a-net' is not an IP network"):
        JobSettings(webhook_allow_cidrs=("10.0.0.0/8", "not-a-net"))


# -- in the connection step ------------------------------------------------------------


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    """A loopback HTTP server answering 204 to anything; yields its port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _post(policy: CallbackPolicy, url: str) -> int:
    async with httpcore.AsyncConnectionPool(network_backend=GuardedBackend(policy)) as pool:
        response = await pool.request("POST", url, content=b"{}")
        return response.status


async def test_the_connection_step_enforces_the_policy(http_server: int) -> None:
    with pytest.raises(CallbackRefused, match=re.escape("127.0.0.1 is a loopback address")):
        await _post(CallbackPolicy(), f"http://127.0.0.1:{http_server}/hook")
    assert await _post(CallbackPolicy.of(["127.0.0.0/8"]), f"http://127.0.0.1:{http_server}/hook") == 204


async def test_a_name_that_turns_private_after_submission_is_refused(http_server: int) -> None:
    # DNS rebinding: public when the job was submitted, loopback when delivered.
    answers = [["93.184.215.14"], ["127.0.0.1"]]

    async def rebinding(host: str, port: int) -> list[str]:
        return answers.pop(0)

    policy = CallbackPolicy(resolve=rebinding)
    url = f"http://rebind.example:{http_server}/hook"
    await policy.check_submission(url)
    with pytest.raises(CallbackRefused, match=re.escape("rebind.example resolves to 127.0.0.1")):
        await _post(policy, url)


async def test_an_allowed_name_connects_and_unresolvable_is_a_connect_error(http_server: int) -> None:
    dns = fake_dns({"hooks.local": ["127.0.0.1"]})
    allowed = CallbackPolicy.of(["127.0.0.0/8"], resolve=dns)  # type: ignore[arg-type]
    assert await _post(allowed, f"http://hooks.local:{http_server}/hook") == 204
    with pytest.raises(httpcore.ConnectError, match=re.escape("cannot resolve nowhere.example")):
        await _post(allowed, f"http://nowhere.example:{http_server}/hook")
