"""Bounded, address-checked HTTP GET for ``/.well-known/atproto-did`` and did:web documents.

What :meth:`SafeFetcher.get` guarantees (issue 5, "Safety"; plc-spec-notes.md §9.2):

1. the URL's scheme and port are ones the caller allows (``https`` on 443 in production) and it
   has no userinfo;
2. the host is resolved with the resolver's own DNS client and *every* address is checked by
   the :class:`~plc.resolve.safety.AddressPolicy` before any connection; the request is then
   sent to a checked address (``Host`` header and TLS SNI/certificate check keep the name), so
   the name is never resolved a second time by the HTTP stack;
3. redirects (301, 302, 303, 307, 308) are followed by hand, at most ``max_redirects`` of them,
   each target going through steps 1-2 again; revisiting a URL is a loop and fails at once;
4. each hop, body included, finishes within ``timeout_s``; connections are never reused
   (no keep-alive), proxies from the environment are ignored;
5. the body is streamed and refused beyond ``max_body_bytes``, before and after decoding
   (``identity``, ``gzip`` or ``deflate``; decompression is bounded too).

Every failure is a :class:`~plc.resolve.errors.FetchError`.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from dataclasses import dataclass

import httpx

from plc.resolve.dnsclient import DnsClient
from plc.resolve.errors import (
    BadResponse,
    BodyTooLarge,
    FetchError,
    TooManyRedirects,
    TransportFailure,
    UnsafeUrl,
)
from plc.resolve.safety import AddressPolicy

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_ADDRESSES_TRIED = 4
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class FetchLimits:
    """Limits of one fetch.

    Attributes:
        allowed_schemes: URL schemes allowed for the first URL and every redirect target.
        allowed_ports: ports allowed likewise (an absent port counts as the scheme's default,
            443 or 80); ``None`` allows any port (only when a test override is in force).
        max_redirects: redirects followed at most.
        max_body_bytes: largest body accepted, raw and decoded (bytes).
        timeout_s: budget of each hop, connection and body included (seconds).
    """

    allowed_schemes: frozenset[str]
    allowed_ports: frozenset[int] | None
    max_redirects: int
    max_body_bytes: int
    timeout_s: float


def production_ports(scheme: str, port_override: int | None) -> frozenset[int] | None:
    """Ports a fetch may use: only 443 for plain production settings (https, no port
    override); any port once a test override (``http`` or an explicit port) is set."""
    if scheme == "https" and port_override is None:
        return frozenset({443})
    return None


@dataclass(frozen=True)
class FetchResult:
    """A 2xx answer: the final URL (after redirects), status, ``Content-Type`` and body."""

    url: str
    status: int
    content_type: str
    body: bytes


class SafeFetcher:
    """Performs checked GETs; one per resolver, safe to share between concurrent tasks.

    Args:
        dns: resolves host names (the only resolution used for connecting).
        policy: decides which addresses may be contacted.
        user_agent: ``User-Agent`` header value.
        ssl_context: TLS settings for https; default: httpx's (certifi roots, verification on).
    """

    def __init__(
        self,
        dns: DnsClient,
        policy: AddressPolicy,
        user_agent: str,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._dns = dns
        self._policy = policy
        self._user_agent = user_agent
        self._ssl_context = ssl_context or httpx.create_ssl_context()

    async def get(self, url: str, limits: FetchLimits, accept: str) -> FetchResult:
        """GET ``url`` under ``limits`` and return the final 2xx answer.

        Args:
            url: absolute URL.
            limits: schemes, redirects, size and time limits.
            accept: ``Accept`` header value.

        Raises:
            UnsafeUrl, UnsafeAddress, HostNotFound: the URL or an address is refused.
            TooManyRedirects: more than ``limits.max_redirects`` hops, or a loop.
            BodyTooLarge: the body exceeds ``limits.max_body_bytes``.
            BadResponse: a non-2xx status or an unsupported content encoding.
            TransportFailure: connection error or timeout.
        """
        try:
            current = httpx.URL(url)
        except httpx.InvalidURL as err:
            raise UnsafeUrl(f"invalid URL: {err}") from err
        visited: set[str] = set()
        async with httpx.AsyncClient(
            verify=self._ssl_context,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(limits.timeout_s),
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            for _hop in range(limits.max_redirects + 1):
                if str(current) in visited:
                    raise TooManyRedirects("redirect loop")
                visited.add(str(current))
                try:
                    async with asyncio.timeout(limits.timeout_s):
                        result = await self._hop(client, current, limits, accept)
                except TimeoutError as err:
                    raise TransportFailure("request timed out") from err
                if isinstance(result, FetchResult):
                    return result
                current = result
        raise TooManyRedirects(f"more than {limits.max_redirects} redirects")

    async def _hop(
        self, client: httpx.AsyncClient, url: httpx.URL, limits: FetchLimits, accept: str
    ) -> FetchResult | httpx.URL:
        """One request; returns the answer, or the next URL when redirected."""
        if url.scheme not in limits.allowed_schemes:
            raise UnsafeUrl(f"scheme {url.scheme[:20]!r} not allowed")
        port = url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme, 0)
        if limits.allowed_ports is not None and port not in limits.allowed_ports:
            raise UnsafeUrl(f"port {port} not allowed")
        if url.userinfo:
            raise UnsafeUrl("URL with credentials")
        try:
            host = url.raw_host.decode("ascii")
        except UnicodeDecodeError as err:
            raise UnsafeUrl("non-ASCII host") from err
        if not host:
            raise UnsafeUrl("URL without host")
        addresses = await self._dns.addresses(host)
        self._policy.ensure_allowed(host, addresses)
        headers = {
            "Host": url.netloc.decode("ascii"),
            "Accept": accept,
            "Accept-Encoding": "identity",
            "User-Agent": self._user_agent,
        }
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        last_error: FetchError = TransportFailure("no address to connect to")
        for address in addresses[:_MAX_ADDRESSES_TRIED]:
            target = url.copy_with(host=str(address))
            try:
                async with client.stream(
                    "GET", target, headers=headers, extensions=extensions
                ) as response:
                    return await _read(response, url, limits)
            except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                last_error = TransportFailure(f"cannot connect to {address}: {type(err).__name__}")
            except httpx.TimeoutException as err:
                raise TransportFailure(f"timeout: {type(err).__name__}") from err
            except httpx.HTTPError as err:
                raise TransportFailure(f"HTTP error: {type(err).__name__}") from err
            except (httpx.InvalidURL, UnicodeError) as err:
                # httpx builds a redirect's next request even when it does not follow it, and
                # a Location it cannot parse (an A-label that is not IDNA, "https:foo") raises
                # there, outside its HTTPError family.
                raise BadResponse("invalid redirect Location") from err
        raise last_error


async def _read(
    response: httpx.Response, url: httpx.URL, limits: FetchLimits
) -> FetchResult | httpx.URL:
    """Turn a streamed response into a result, a redirect target, or an error."""
    status = response.status_code
    if status in _REDIRECT_STATUSES:
        location = response.headers.get("location")
        if not location:
            raise BadResponse(f"HTTP {status} without Location")
        try:
            return url.join(location)
        except (httpx.InvalidURL, UnicodeError) as err:
            raise BadResponse("invalid redirect Location") from err
    if not 200 <= status <= 299:
        raise BadResponse(f"HTTP {status}")
    declared = response.headers.get("content-length")
    if (
        declared is not None
        and declared.strip().isascii()
        and declared.strip().isdigit()
        and int(declared) > limits.max_body_bytes
    ):
        raise BodyTooLarge(f"Content-Length {int(declared)} over {limits.max_body_bytes}")
    raw = bytearray()
    async for chunk in response.aiter_raw():
        raw.extend(chunk)
        if len(raw) > limits.max_body_bytes:
            raise BodyTooLarge(f"body over {limits.max_body_bytes} bytes")
    body = _decode(bytes(raw), response.headers.get("content-encoding", ""), limits.max_body_bytes)
    return FetchResult(
        url=str(url),
        status=status,
        content_type=response.headers.get("content-type", ""),
        body=body,
    )


def _decode(raw: bytes, encoding: str, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` (identity, gzip, deflate), producing at most ``max_bytes``.

    Raises:
        BodyTooLarge: the decoded body would exceed ``max_bytes``.
        BadResponse: another or a stacked encoding, or corrupt compressed data.
    """
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return raw
    if name in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif name == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise BadResponse(f"unsupported Content-Encoding {name[:40]!r}")
    decompressor = zlib.decompressobj(wbits)
    try:
        out = decompressor.decompress(raw, max_bytes + 1)
    except zlib.error as err:
        raise BadResponse("corrupt compressed body") from err
    if len(out) > max_bytes or decompressor.unconsumed_tail:
        raise BodyTooLarge(f"decoded body over {max_bytes} bytes")
    return out
