"""Where webhooks may go: an allow-list against server-side request forgery.

Whoever submits a job picks its callback URL, and the replica POSTs to it from
inside the network: to 127.0.0.1 (its own admin API, Redis), to private
services, or to 169.254.169.254 (cloud metadata, i.e. credentials). So a
callback must be http(s) and reach only publicly routable addresses, unless the
operator opens networks (``--jobs-webhook-allow-cidr``) or host names
(``--jobs-webhook-allow-host``).

It is checked twice: at submission (a 422 that says why), and at delivery in
the connection step itself (``GuardedBackend``), on the very addresses the
socket is then opened to. A name that resolved to a public address at
submission and resolves to a private one later (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpcore

from model_services.jobs.settings import JobSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HINT = "webhooks only go to public addresses unless this service allows the address or host"
_SUBMIT_RESOLVE_S = 2.0


class CallbackRefused(ValueError):
    """The callback URL may not be used; the message says why."""


def _translated_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: a dual-stack socket connects
    ::ffff:a.b.c.d to a.b.c.d, a NAT64 gateway 64:ff9b::a.b.c.d."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address reaches: the translated one, or the one a
    6to4 relay (2002:aabb:ccdd::) forwards to."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    return [x for x in (_translated_ipv4(ip), ip.sixtofour) if x is not None]


def _own_refusal(ip: IPAddress) -> str | None:
    # Python's flags follow the IANA special-purpose registries; is_global
    # also catches what has no flag of its own (100.64.0.0/10 shared space,
    # documentation and benchmarking ranges).
    rules = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "a site-local address"),
        (not ip.is_global, "not a globally routable address"),
    )
    return next((why for refused, why in rules if refused), None)


def refusal(ip: IPAddress) -> str | None:
    """Why a webhook must not go to ``ip`` by default; None for a public address."""
    for inner in _embedded_ipv4(ip):
        why = _own_refusal(inner)
        if why is not None:
            return f"{why} (it reaches {inner})"
    if _translated_ipv4(ip) is not None:
        return None  # the IPv4 address it reaches is what counts, and it passed
    return _own_refusal(ip)


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class CallbackPolicy:
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    resolve: Resolver = field(default=system_resolve, compare=False)

    @classmethod
    def of(
        cls, cidrs: Iterable[str] = (), hosts: Iterable[str] = (), resolve: Resolver = system_resolve
    ) -> CallbackPolicy:
        return cls(
            tuple(ipaddress.ip_network(c, strict=False) for c in cidrs),
            frozenset(_normal_host(h) for h in hosts),
            resolve,
        )

    @classmethod
    def from_settings(cls, settings: JobSettings) -> CallbackPolicy:
        return cls.of(settings.webhook_allow_cidrs, settings.webhook_allow_hosts)

    def address_refusal(self, ip: IPAddress) -> str | None:
        """None when webhooks may go to ``ip``, else why not."""
        # An allowed network opens an address however it is written (an
        # IPv4-mapped ::ffff:127.0.0.1 is in 127.0.0.0/8).
        for candidate in (ip, *_embedded_ipv4(ip)):
            if any(candidate.version == net.version and candidate in net for net in self.allow_networks):
                return None
        return refusal(ip)

    def host_allowed(self, host: str) -> bool:
        return _normal_host(host) in self.allow_hosts

    def target(self, url: str) -> tuple[str, int]:
        """(host, port) of an acceptable callback URL; checks everything that
        needs no DNS: scheme, form, and a literal address."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise CallbackRefused(f"callback_url is not a valid URL ({exc})") from exc
        if not url.isascii():
            raise CallbackRefused("callback_url must be ASCII: IDNA-encode the host (xn--...), percent-encode the rest")
        if parts.scheme not in ("http", "https") or not host:
            raise CallbackRefused("callback_url must be an absolute http(s) URL")
        port = port or (443 if parts.scheme == "https" else 80)
        ip = _parse_ip(host)
        if ip is not None and not self.host_allowed(host):
            self._check(host, ip)
        return host, port

    def _check(self, host: str, ip: IPAddress, name: str | None = None) -> None:
        why = self.address_refusal(ip)
        if why is not None:
            where = f"{name} resolves to {host}, which is" if name else f"{host} is"
            raise CallbackRefused(f"callback_url is refused: {where} {why}; {_HINT}")

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses a delivery to ``host`` may connect to, in the resolver's
        order; every one must pass, since any of them may be the one used."""
        if self.host_allowed(host):
            return [host]
        literal = _parse_ip(host)
        if literal is not None:
            self._check(host, literal)
            return [host]
        resolved = await self.resolve(host, port)
        for address in resolved:
            ip = _parse_ip(address)
            if ip is None:
                raise CallbackRefused(f"callback_url is refused: {host} resolves to {address!r}, not an IP address")
            self._check(address, ip, name=host)
        return resolved

    async def check_submission(self, url: str) -> None:
        """What a submission can know: the URL's form, and what its host resolves
        to now. A name that does not resolve (yet) passes: delivery checks again
        and retries, and a DNS hiccup should not turn a job away."""
        host, port = self.target(url)
        if self.host_allowed(host) or _parse_ip(host) is not None:
            return
        try:
            async with asyncio.timeout(_SUBMIT_RESOLVE_S):
                await self.addresses(host, port)
        except (OSError, TimeoutError):
            return


def _normal_host(host: str) -> str:
    return host.strip().rstrip(".").lower().removeprefix("[").removesuffix("]")


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy in the connect step: the
    socket only ever opens to an address that was just checked."""

    def __init__(self, policy: CallbackPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._policy.addresses(host, port)
        except OSError as exc:  # resolution failed: a transport error, retried
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise CallbackRefused("callback_url is refused: webhooks never go to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
