"""The client's address behind trusted proxies: X-Forwarded-For and Forwarded are read only
from the proxies that DORSI_FORWARDED_ALLOW_IPS names.

Everything that reads the client's address (the sign-in limits, the audit trail's `ip`,
the access log) reads the request's `client`, which this layer sets first. From any other
peer the headers are ignored, so no caller can choose the address it is counted under.
"""

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Addresses and networks (`10.0.0.1`, `10.0.0.0/8`, `::1`), or `*` for any peer."""

    def __init__(self, entries: Iterable[str]) -> None:
        entries = [e.strip() for e in entries if e.strip()]
        self.everyone = "*" in entries
        self.networks: list[Network] = [
            ipaddress.ip_network(e, strict=False) for e in entries if e != "*"
        ]

    def __bool__(self) -> bool:
        return self.everyone or bool(self.networks)

    def __contains__(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # a unix socket, or a name: not an address a proxy list names
        return any(address in network for network in self.networks)


def check_entry(entry: str) -> str:
    """Raises ValueError for what is neither `*` nor an address or network."""
    if entry.strip() != "*":
        ipaddress.ip_network(entry.strip(), strict=False)
    return entry


def _forwarded_for(value: str) -> list[str]:
    """The `for=` nodes of a Forwarded header (RFC 7239), first hop first, without their
    quotes, brackets and ports; `unknown` and obfuscated ones as they are."""
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, node = pair.strip().partition("=")
            if name.lower() != "for":
                continue
            node = node.strip().strip('"')
            if node.startswith("["):  # "[2001:db8::1]:4711"
                node = node[1:].partition("]")[0]
            elif node.count(":") == 1:  # "192.0.2.60:4711"
                node = node.partition(":")[0]
            hops.append(node)
    return hops


def client_behind(peer: str, headers: list[tuple[bytes, bytes]], trusted: TrustedProxies) -> str:
    """The client's address: the peer's own, unless the peer is a trusted proxy; then the
    nearest hop that is not a trusted proxy, read from X-Forwarded-For (as uvicorn reads
    it) or else from Forwarded. Only IP addresses are taken."""
    if peer not in trusted:
        return peer
    forwarded_for = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
    if forwarded_for:
        hops = [h.strip() for h in ",".join(forwarded_for).split(",") if h.strip()]
    else:
        forwarded = [v.decode("latin-1") for k, v in headers if k == b"forwarded"]
        hops = _forwarded_for(",".join(forwarded))
    address = peer
    for hop in reversed(hops):
        if not _is_address(hop):
            # `unknown`, an obfuscated node or garbage: the nearest address known is all
            # there is to go on.
            return address
        address = hop
        if hop not in trusted:
            return hop
    return address  # every hop is trusted: the farthest is the client


def _is_address(node: str) -> bool:
    try:
        ipaddress.ip_address(node)
    except ValueError:
        return False
    return True


class ForwardedClient:
    """Sets the request's client to the address behind trusted proxies."""

    def __init__(self, app: ASGIApp, *, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if self.trusted and scope["type"] in ("http", "websocket") and client:
            address = client_behind(client[0], scope["headers"], self.trusted)
            if address != client[0]:
                scope = {**scope, "client": (address, 0)}
        await self.app(scope, receive, send)
