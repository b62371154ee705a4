"""Which webhook URLs Dorsi will send to: outside development and tests, https only, and
never to an address of this host, its network or a cloud's metadata service.

Checked when an endpoint is registered and again before every send (the name may have
been pointed elsewhere since: DNS rebinding). In development and tests, plain
``http://127.0.0.1`` and ``localhost`` are allowed so that local receivers work."""

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from app.core.config import Environment

# Metadata services that sit on ordinary-looking addresses, beside the link-local ones.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class UnsafeURL(ValueError):
    """The URL may not be sent to; the message says why."""


def _local_allowed(environment: Environment) -> bool:
    return environment in (Environment.development, Environment.test)


def check_form(url: str, environment: Environment) -> str:
    """The URL's host, if its form is acceptable (scheme, host, no credentials)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeURL("The URL has no host.")
    if parts.username or parts.password:
        raise UnsafeURL("The URL may not carry a user name or password.")
    if parts.scheme == "https":
        return host
    if parts.scheme == "http" and _local_allowed(environment) and host in LOCAL_HOSTS:
        return host
    raise UnsafeURL("The URL must use https.")


def check_address(address: str, environment: Environment, host: str) -> None:
    """Refuse an address of this host, a private network, link-local or metadata range."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if _local_allowed(environment) and host in LOCAL_HOSTS and ip.is_loopback:
        return
    if (
        ip in METADATA_ADDRESSES
        or ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    ):
        raise UnsafeURL(f"The URL's host resolves to {ip}, which is not a public address.")


async def check(url: str, environment: Environment) -> str:
    """Raise `UnsafeURL` unless every address the URL's host resolves to may be sent to;
    answers the first of them, for the send to connect to (`pinned`)."""
    host = check_form(url, environment)
    port = urlsplit(url).port or 443
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeURL(f"The URL's host {host!r} does not resolve.") from None
    addresses = [str(sockaddr[0]) for *_rest, sockaddr in found]
    for address in addresses:
        check_address(address, environment, host)
    if not addresses:
        raise UnsafeURL(f"The URL's host {host!r} does not resolve.")
    return addresses[0]


def pinned(url: str, address: str) -> tuple[str, str, str]:
    """The URL with its host replaced by the address checked, so the connection goes
    there and not wherever the name points a moment later; with the ``Host`` header and
    the TLS server name (SNI, and the certificate's name) the original URL had."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), parts.netloc, host
