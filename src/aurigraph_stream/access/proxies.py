"""Who the client is: its address, seen through the proxies we trust.

Behind a load balancer every peer is the balancer; the client's address is
in ``X-Forwarded-For``. That header is believed only when the peer is a
proxy listed in ``trusted_proxies``, and then only as far as trusted proxies
wrote it: it is read right to left, and the first address that is not a
trusted proxy is the client (what a client writes further left cannot be
checked, so it is never believed). ``X-Real-IP`` is the fallback.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping

from aurigraph_stream.config import split_list
from aurigraph_stream.errors import ConfigError

__all__ = ["IPAddress", "TrustedProxies", "client_key", "parse_ip", "peer_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# Every connect and ingest request parses its peer's address, and the same few
# addresses come back again and again (proxies, NAT, local clients): cached.
@functools.lru_cache(maxsize=4096)
def parse_ip(text: str) -> IPAddress | None:
    """An address from ``"v4"``, ``"v4:port"``, ``"v6"`` or ``"[v6]:port"``; None if not one."""
    text = text.strip()
    if text.startswith("["):  # "[v6]" or "[v6]:port"
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # "v4:port"
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def client_key(ip: IPAddress) -> str:
    """The key limits count under: the address, or its /64 for IPv6.

    One IPv6 host usually holds a whole /64, so counting single addresses would
    let it pick a fresh one for every request.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def peer_host(peer: str) -> str:
    """The host of a ``"host:port"`` peer (an IPv6 host has colons of its own)."""
    return peer.rpartition(":")[0] if ":" in peer else peer


class TrustedProxies:
    """The proxies whose forwarding headers are believed."""

    __slots__ = ("networks",)

    def __init__(self, networks: tuple[IPNetwork, ...] = ()) -> None:
        self.networks = networks

    @classmethod
    def parse(cls, setting: str) -> TrustedProxies:
        """From ``trusted_proxies``: comma-separated addresses or networks.

        Raises:
            ConfigError: an item that is neither.
        """
        networks: list[IPNetwork] = []
        for item in split_list(setting):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError(
                    f"trusted_proxies: {item!r} is not an address or network"
                ) from None
        return cls(tuple(networks))

    def trusted(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.networks)

    def client_ip(self, peer: str, headers: Mapping[str, str]) -> IPAddress | None:
        """The client's address: the peer's, unless the peer is a trusted proxy."""
        ip = parse_ip(peer.rpartition(":")[0] if ":" in peer else peer)  # peer_host, inline
        if ip is None or not self.networks or not self.trusted(ip):
            return ip
        forwarded = headers.get("x-forwarded-for")
        if forwarded:
            for hop in reversed(forwarded.split(",")):
                hop_ip = parse_ip(hop)
                if hop_ip is None:
                    break  # a proxy would not write this: stop at the last good hop
                ip = hop_ip
                if not self.trusted(hop_ip):
                    return hop_ip
            return ip
        real = parse_ip(headers.get("x-real-ip", ""))
        return real if real is not None else ip

    def client(self, peer: str, headers: Mapping[str, str]) -> str:
        """The key the client's limits count under (:func:`client_key`)."""
        ip = self.client_ip(peer, headers)
        return client_key(ip) if ip is not None else peer_host(peer)
