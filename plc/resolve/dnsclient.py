"""DNS lookups of the resolver (dnspython's asyncio resolver): TXT records and host addresses.

One :class:`DnsClient` per resolver. It asks the servers in ``dns_nameservers`` (on
``dns_port``) or, when that is empty, the system's ``/etc/resolv.conf`` servers; it never reads
``/etc/hosts`` (only the name ``localhost`` is answered locally, with the loopback addresses).
Search domains are never appended: every name is absolute. Each query has a lifetime of
``request_timeout_s``; DNSSEC is not required (plc-spec-notes.md §9.2).
"""

from __future__ import annotations

import asyncio
import ipaddress

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from plc.resolve.errors import HostNotFound, TransportFailure
from plc.resolve.safety import IPAddress
from plc.resolve.settings import ResolverSettings

_LOCALHOST: tuple[IPAddress, ...] = (
    ipaddress.IPv4Address("127.0.0.1"),
    ipaddress.IPv6Address("::1"),
)


class DnsClient:
    """TXT and A/AAAA lookups with the configured servers and timeout.

    Args:
        settings: ``dns_nameservers``, ``dns_port`` and ``request_timeout_s`` are used.
    """

    def __init__(self, settings: ResolverSettings) -> None:
        self._timeout_s = settings.request_timeout_s
        self._resolver: dns.asyncresolver.Resolver | None
        self._config_error = ""
        try:
            if settings.dns_nameservers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = list(settings.dns_nameservers)
                resolver.port = settings.dns_port
            else:
                resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration as err:
            self._resolver = None
            self._config_error = f"no DNS configuration: {err}"
            return
        resolver.timeout = self._timeout_s
        resolver.lifetime = self._timeout_s
        self._resolver = resolver

    async def txt(self, name: str) -> list[str]:
        """Return the TXT records of ``name``, each one's character-strings joined.

        Args:
            name: a host name without trailing dot (queried as an absolute name).

        Returns:
            One ``str`` per record (ASCII; other bytes become U+FFFD); ``[]`` when the name
            does not exist or has no TXT record.

        Raises:
            TransportFailure: timeout, SERVFAIL from every server, or no DNS configuration.
        """
        answer = await self._query(name, "TXT")
        if answer is None:
            return []
        records: list[str] = []
        for rdata in answer:
            chunks: tuple[bytes, ...] = getattr(rdata, "strings", ())
            records.append(b"".join(chunks).decode("ascii", errors="replace"))
        return records

    async def addresses(self, host: str) -> list[IPAddress]:
        """Return the IPv4 then IPv6 addresses of ``host`` (A and AAAA asked concurrently).

        An IP literal is returned as itself; ``localhost`` as 127.0.0.1 and ::1.

        Raises:
            HostNotFound: neither an A nor an AAAA record exists.
            TransportFailure: both lookups failed for another reason (timeout, SERVFAIL).
        """
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        if host.lower() == "localhost":
            return list(_LOCALHOST)
        results = await asyncio.gather(
            self._query(host, "A"), self._query(host, "AAAA"), return_exceptions=True
        )
        found: list[IPAddress] = []
        failures: list[BaseException] = []
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, TransportFailure):
                    raise result
                failures.append(result)
                continue
            if result is not None:
                found.extend(ipaddress.ip_address(rdata.to_text()) for rdata in result)
        if found:
            return found
        if failures and len(failures) == len(results):
            raise TransportFailure(str(failures[0]))
        raise HostNotFound(f"no address for {host[:200]}")

    async def _query(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        """One query; ``None`` for NXDOMAIN / no answer, :class:`TransportFailure` otherwise."""
        if self._resolver is None:
            raise TransportFailure(self._config_error)
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as err:
            raise TransportFailure(f"bad DNS name: {err}") from err
        try:
            return await self._resolver.resolve(
                qname, rdtype, search=False, lifetime=self._timeout_s
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.Timeout as err:
            raise TransportFailure(f"DNS {rdtype} lookup timed out") from err
        except dns.exception.DNSException as err:
            raise TransportFailure(f"DNS {rdtype} lookup failed: {type(err).__name__}") from err
