"""Which network addresses the resolver may connect to (issue 5, "Safety").

The resolver fetches URLs chosen by strangers (a handle's host, a did:web host, any redirect
target), so by default it connects only to *public* unicast addresses: never to loopback,
private (RFC 1918, ULA), shared (CGNAT), link-local, multicast, unspecified, broadcast,
documentation or reserved ranges, IPv4 or IPv6. IPv6 forms that embed an IPv4 address
(IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, Teredo ``2001::/32``, NAT64
``64:ff9b::/96``) are judged by the embedded address. ``allow_private_networks`` lifts the rule
and ``allowed_networks`` exempts chosen CIDR blocks (tests and private deployments).

The caller resolves the host name itself, checks every address with
:meth:`AddressPolicy.ensure_allowed` and then connects to one of the checked addresses
(``plc.resolve.fetch``), so a DNS answer that changes between the check and the connection
cannot bypass the rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from plc.resolve.errors import UnsafeAddress
from plc.resolve.settings import ResolverSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address carried inside an IPv6 one (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client): the client is where packets end up
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """Return whether ``address`` is a globally reachable unicast address.

    Embedded IPv4 addresses (see :func:`embedded_ipv4`) are judged instead of the IPv6 form.
    """
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return is_public_address(inner)
        if address.is_site_local:
            return False
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and not address.is_loopback
        and not address.is_link_local
        and not address.is_private
    )


@dataclass(frozen=True)
class AddressPolicy:
    """The address rule in force: public only, unless ``allow_private`` or a listed network.

    Attributes:
        allow_private: every address is allowed (tests, private deployments).
        allowed_networks: blocks allowed even though they are not public.
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: ResolverSettings) -> AddressPolicy:
        """Build the policy from ``allow_private_networks`` and ``allowed_networks``."""
        networks = tuple(ipaddress.ip_network(c, strict=False) for c in settings.allowed_networks)
        return cls(allow_private=settings.allow_private_networks, allowed_networks=networks)

    def is_allowed(self, address: IPAddress) -> bool:
        """Return whether the resolver may connect to ``address``."""
        if self.allow_private or self._listed(address):
            return True
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address)
            if inner is not None and self._listed(inner):
                return True
        return is_public_address(address)

    def ensure_allowed(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Require every address ``host`` resolved to be allowed.

        One non-public address is enough to refuse the host: a name that points into a private
        network is not fetched at all, even if it also has public addresses.

        Raises:
            UnsafeAddress: an address is not allowed (the message names the first one).
        """
        for address in addresses:
            if not self.is_allowed(address):
                raise UnsafeAddress(f"{host[:200]} resolves to non-public address {address}")

    def _listed(self, address: IPAddress) -> bool:
        return _in_any(address, self.allowed_networks)


def _in_any(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in networks)
