"""DID -> DID document: did:plc from an injected source, did:web over HTTPS (§9.2, issue 5).

- **did:plc** documents come from a :class:`PlcDocumentSource`. The server passes one backed by
  its own store (no network hop, never stale); :class:`HttpPlcDocumentSource` reads any PLC
  directory over HTTP (used by ``plc resolve``), within the resolver's deadline.
- **did:web** is supported for hostname-level DIDs only (``did:web:example.com`` ->
  ``https://example.com/.well-known/did.json``), as atproto allows; ``did:web:localhost%3A<port>``
  is fetched over plain HTTP only when private networks are allowed. Path-based did:web and any
  other percent-encoding are refused.
- Every document must be a JSON object whose ``id`` equals the DID asked for.

:func:`claimed_handle` reads the handle a document claims (first valid ``at://`` entry of
``alsoKnownAs``, lower-cased), the basis of bidirectional verification (§9.2).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import httpx
import orjson

from plc.errors import DidNotAvailable, DidNotRegistered, Unavailable, echo
from plc.resolve.errors import BadResponse, DidNotFound, FetchError
from plc.resolve.fetch import FetchLimits, SafeFetcher, production_ports
from plc.resolve.settings import ResolverSettings
from plc.resolve.syntax import has_disallowed_tld, is_valid_handle

_log = logging.getLogger(__name__)

DID_WEB_PATH = "/.well-known/did.json"
"""Where a hostname-level did:web document lives."""

_DID_ACCEPT = "application/did+ld+json, application/did+json, application/json"

MAX_DOCUMENT_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a DID document (a real one nests about
four levels). orjson parses up to 1024 levels but serialises only 254, and copying a deep
document recurses: a did:web host could otherwise turn every request that reads it into a
500."""


class PlcDocumentSource(Protocol):
    """Where did:plc documents come from (the server's store, or a PLC directory over HTTP)."""

    async def get_document(self, did: str, deadline: float | None = None) -> dict[str, Any]:
        """Return the current DID document of ``did`` (shape of plc-spec-notes.md §5).

        ``deadline`` (``loop.time()`` seconds, the resolver's): a remote source answers by
        then or not at all; a local one (the server's store, one database read) may ignore it.

        Raises:
            plc.errors.DidNotRegistered: no operation was ever accepted for ``did``.
            plc.errors.DidNotAvailable: ``did`` is tombstoned.
            plc.errors.Unavailable: the source cannot answer right now (or by ``deadline``).
        """
        ...


def parse_document(did: str, body: bytes) -> dict[str, Any]:
    """Parse a DID document and require ``id == did``.

    Raises:
        DidNotFound: not JSON, not an object, or another ``id``.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise DidNotFound(f"DID document is not JSON: {echo(did)}") from err
    return validate_document(did, document)


def validate_document(did: str, document: object) -> dict[str, Any]:
    """Return ``document`` if it is a JSON object whose ``id`` is ``did``.

    Raises:
        DidNotFound: anything else (the document is not *this* DID's document), or a document
            nested deeper than :data:`MAX_DOCUMENT_DEPTH`.
    """
    if not isinstance(document, dict):
        raise DidNotFound(f"DID document is not an object: {echo(did)}")
    if document.get("id") != did:
        raise DidNotFound(f"DID document id does not match: {echo(did)}")
    if _too_deep(document, MAX_DOCUMENT_DEPTH):
        raise DidNotFound(
            f"DID document nests too deep (over {MAX_DOCUMENT_DEPTH} levels): {echo(did)}"
        )
    return document


def _too_deep(value: object, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` levels (no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] | object = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)  # type: ignore[union-attr]
    return False


def claimed_handle(document: dict[str, Any]) -> str | None:
    """Return the handle the document claims: first ``at://`` entry of ``alsoKnownAs`` that is a
    syntactically valid handle, lower-cased; ``None`` if there is none (§9.2)."""
    also_known_as = document.get("alsoKnownAs")
    if not isinstance(also_known_as, list):
        return None
    for entry in also_known_as:
        if isinstance(entry, str) and entry.startswith("at://"):
            candidate = entry[len("at://") :]
            if is_valid_handle(candidate):
                return candidate.lower()
    return None


def did_web_host(did: str) -> str:
    """The host a ``did:web`` DID names, lower-case, without port or path
    (``did:web:localhost%3A8080`` -> ``localhost``): what its fetch counts against in the
    per-domain lookup cap. No validity check (:meth:`DidWebLookup.document_url` does that)."""
    return did[len("did:web:") :].split(":", 1)[0].partition("%")[0].lower()


class DidWebLookup:
    """Fetches hostname-level did:web documents through the checked fetcher.

    Args:
        fetcher: the resolver's :class:`~plc.resolve.fetch.SafeFetcher`.
        settings: ``did_web_http_scheme``/``did_web_http_port`` (tests only), limits,
            ``allow_private_networks`` (gates ``did:web:localhost%3A<port>``).
    """

    def __init__(self, fetcher: SafeFetcher, settings: ResolverSettings) -> None:
        self._fetcher = fetcher
        self._scheme = settings.did_web_http_scheme
        self._port = settings.did_web_http_port
        self._allow_localhost = settings.allow_private_networks
        self._limits = FetchLimits(
            allowed_schemes=frozenset({"https", settings.did_web_http_scheme}),
            allowed_ports=production_ports(
                settings.did_web_http_scheme, settings.did_web_http_port
            ),
            max_redirects=settings.max_redirects,
            max_body_bytes=settings.max_body_bytes,
            timeout_s=settings.request_timeout_s,
        )
        self._localhost_limits = FetchLimits(
            allowed_schemes=frozenset({"https", "http"}),
            allowed_ports=None,  # localhost:<port>, only with private networks allowed
            max_redirects=settings.max_redirects,
            max_body_bytes=settings.max_body_bytes,
            timeout_s=settings.request_timeout_s,
        )

    def document_url(self, did: str) -> tuple[str, FetchLimits]:
        """Return the URL of ``did``'s document and the limits to fetch it with.

        Raises:
            DidNotFound: not a hostname-level did:web this resolver serves (path-based,
                bad host, disallowed TLD, or localhost while private networks are refused).
        """
        rest = did[len("did:web:") :]
        if ":" in rest:
            raise DidNotFound(f"Unsupported did:web (path-based): {echo(did)}")
        host, sep, port = rest.partition("%3A")
        if not sep:
            host, sep, port = rest.partition("%3a")
        if sep:
            if (
                host != "localhost"
                or not (port.isascii() and port.isdigit())
                or not 0 < int(port) < 65_536
            ):
                raise DidNotFound(f"Unsupported did:web (port): {echo(did)}")
            if not self._allow_localhost:
                raise DidNotFound(f"did:web on localhost is not allowed: {echo(did)}")
            return f"http://localhost:{int(port)}{DID_WEB_PATH}", self._localhost_limits
        if "%" in host or not is_valid_handle(host) or has_disallowed_tld(host):
            raise DidNotFound(f"Unsupported did:web host: {echo(did)}")
        port_part = f":{self._port}" if self._port is not None else ""
        return f"{self._scheme}://{host.lower()}{port_part}{DID_WEB_PATH}", self._limits

    async def fetch(self, did: str) -> dict[str, Any]:
        """Fetch and check the document of a did:web DID.

        Raises:
            DidNotFound: unsupported form, fetch refused or failed (status, size, safety,
                timeout), or an invalid document (see :func:`parse_document`).
        """
        url, limits = self.document_url(did)
        try:
            result = await self._fetcher.get(url, limits, accept=_DID_ACCEPT)
        except FetchError as err:
            # The kind of failure would tell any caller whether the host is private, down or
            # misbehaving: it goes to the log, the client gets one message.
            _log.info("did:web fetch failed: %s: %s", type(err).__name__, err)
            raise DidNotFound(f"did:web document unavailable: {echo(did)}") from err
        return parse_document(did, result.body)


class HttpPlcDocumentSource:
    """A :class:`PlcDocumentSource` reading ``GET <base_url>/<did>`` of a PLC directory.

    The base URL is trusted configuration (it may be a local directory), so the private-network
    rule does not apply; the body is still capped and the whole request (connection, headers
    and every byte of the body, not each phase alone) timed out.

    Args:
        base_url: e.g. ``https://plc.directory``.
        timeout_s: most seconds one request takes, from connecting to the body's last byte.
        max_body_bytes: largest document accepted.
        transport: optional httpx transport (tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        max_body_bytes: int = 1_048_576,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._max_body_bytes = max_body_bytes
        self._transport = transport

    async def get_document(self, did: str, deadline: float | None = None) -> dict[str, Any]:
        """Return the document; 404 ``DID not available`` (or 410) means tombstoned. The whole
        request ends by ``deadline`` (``loop.time()`` s) or after ``timeout_s``, whichever
        comes first.

        Raises:
            DidNotRegistered: any other 404.
            DidNotAvailable: tombstoned.
            Unavailable: network failure, no full answer in time, oversized body, other
                status, bad JSON.
        """
        until = asyncio.get_running_loop().time() + self._timeout_s
        if deadline is not None:
            until = min(until, deadline)
        try:
            async with asyncio.timeout_at(until):
                return await self._fetch(did)
        except TimeoutError:
            # httpx times each phase alone (a body sent a byte at a time never trips it)
            raise Unavailable("PLC directory did not answer in time") from None

    async def _fetch(self, did: str) -> dict[str, Any]:
        url = f"{self._base_url}/{did}"
        try:
            async with httpx.AsyncClient(
                timeout=self._timeout_s, transport=self._transport, follow_redirects=True
            ) as client:
                async with client.stream("GET", url, headers={"Accept": _DID_ACCEPT}) as response:
                    body = await _read_capped(response, self._max_body_bytes)
                    status = response.status_code
        except httpx.HTTPError as err:
            raise Unavailable(f"PLC directory unreachable: {type(err).__name__}") from err
        except BadResponse as err:
            raise Unavailable(f"PLC directory answer refused: {err}") from err
        if status == 200:
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError as err:
                raise Unavailable("PLC directory answered invalid JSON") from err
            if not isinstance(document, dict):
                raise Unavailable("PLC directory answered a non-object")
            return document
        message = _message_of(body)
        if status == 410 or (status == 404 and message.startswith("DID not available")):
            raise DidNotAvailable(message or f"DID not available: {echo(did)}")
        if status == 404:
            raise DidNotRegistered(message or f"DID not registered: {echo(did)}")
        raise Unavailable(f"PLC directory answered HTTP {status}")


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise BadResponse(f"body over {max_bytes} bytes")
    return bytes(body)


def _message_of(body: bytes) -> str:
    """The ``message`` of a ``{"message": ...}`` error body, cut to 200 characters, or ``""``."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    message = parsed.get("message") if isinstance(parsed, dict) else None
    return echo(message) if isinstance(message, str) else ""
