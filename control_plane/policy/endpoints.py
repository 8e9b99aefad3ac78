"""Endpoint strings (``10.0.0.7:8080``, ``[::1]:8080``, ``model-v3.internal:80``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# RFC 1123 host names: labels of letters, digits and hyphens, not starting or ending in a hyphen.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True, slots=True)
class ParsedEndpoint:
    host: str
    port: int
    is_ip: bool


def parse_endpoint(value: str) -> ParsedEndpoint:
    """Parse ``host:port``; raise ``ValueError`` naming what is wrong."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"unparsable endpoint {value!r}: IPv6 needs the form [addr]:port")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"unparsable endpoint {value!r}: expected host:port")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"unparsable endpoint {value!r}: port must be 1-65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if text.startswith("[") or not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
            raise ValueError(
                f"unparsable endpoint {value!r}: {host!r} is neither an IP address nor a DNS name"
            ) from None
        return ParsedEndpoint(host, int(port_text), is_ip=False)
    return ParsedEndpoint(host, int(port_text), is_ip=True)
