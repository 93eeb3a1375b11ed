"""Where an agent's HTTP tool may send its requests.

Not, by default, to this machine or the networks around it: loopback, private,
link-local (cloud metadata at 169.254.169.254), multicast, reserved and unspecified
addresses are refused, unless `TOOL_EGRESS_ALLOW` lists them (addresses or networks, for
internal services). Plain http only where `TOOL_ALLOW_HTTP` says (debug mode by default).

A tool's URL is checked when it is saved, and again at call time after DNS resolution;
the request then goes to the very address that was checked (the name kept for the Host
header and TLS), so a name that changes its answer in between (DNS rebinding) gains
nothing.
"""

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

DEFAULT_PORTS = {"http": 80, "https": 443}


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(
        address in ipaddress.ip_network(network, strict=False)
        for network in settings.TOOL_EGRESS_ALLOW
    )


def address_problem(ip: str) -> str | None:
    """Why a tool may not connect to this address, or None."""
    address = ipaddress.ip_address(ip.split("%", 1)[0])  # an IPv6 zone is not part of it
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if _allowed(address):
        return None
    # Most specific first: Python counts link-local and unspecified addresses as private.
    for kind in ("loopback", "link_local", "unspecified", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return (
                f"{address} is {kind.replace('_', '-')}, not public: agent tools may not "
                "reach it (TOOL_EGRESS_ALLOW lists the exceptions)"
            )
    return None


def scheme_problem(url: str) -> str | None:
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and settings.TOOL_ALLOW_HTTP):
        return None
    return f"use an https:// URL (TOOL_ALLOW_HTTP allows http://), not {scheme}://"


def _host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or DEFAULT_PORTS.get(parts.scheme, 443)


def _addresses(infos) -> list[str]:
    return list(dict.fromkeys(info[4][0] for info in infos))


def _any_problem(addresses: list[str]) -> str | None:
    """A name may resolve to several addresses; the connection could use any of them."""
    return next(filter(None, map(address_problem, addresses)), None)


def url_problem(url: str) -> str | None:
    """Checked when a tool is saved. A name that does not resolve now is let through: the
    check after resolution at call time still stands."""
    if problem := scheme_problem(url):
        return problem
    host, port = _host_and_port(url)
    try:
        addresses = _addresses(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except (socket.gaierror, UnicodeError):
        return None
    return _any_problem(addresses)


async def checked_address(url: str) -> tuple[str | None, str | None]:
    """(the address to connect to, None), or (None, why not), resolved now."""
    if problem := scheme_problem(url):
        return None, problem
    host, port = _host_and_port(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return None, f"cannot resolve {host}: {exc}"
    addresses = _addresses(infos)
    if not addresses:
        return None, f"cannot resolve {host}"
    if problem := _any_problem(addresses):
        return None, problem
    return addresses[0], None
