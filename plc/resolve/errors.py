"""Errors of identity resolution (plc-spec-notes.md §9.3), under the project's tree (plc.errors).

The client-visible classes carry the lexicon error name of ``com.atproto.identity.*`` in
``xrpc_error``; the HTTP layer (``plc.api.routes.identity``) picks the status code. The fetch
errors are internal: they explain why a handle or did:web lookup failed and are never shown to
a client verbatim (messages do not echo more than 200 characters of any remote value).

::

    plc.errors.PlcError
    ├── plc.errors.InvalidInput
    │   └── InvalidRequest            "InvalidRequest": a missing or malformed parameter
    └── plc.errors.NotFound
        ├── HandleNotFound            "HandleNotFound": the handle resolves to no (verified) DID
        ├── DidNotFound               "DidNotFound": no current DID document
        └── plc.errors.DidNotAvailable
            └── DidDeactivated        "DidDeactivated": a tombstoned did:plc

    FetchError                        internal, one failed DNS/HTTP lookup (a negative answer)
    ├── UnsafeAddress                 the host resolves to a non-public address (safety rule)
    ├── UnsafeUrl                     scheme, port or host not allowed
    ├── HostNotFound                  no A/AAAA address for the host
    ├── TooManyRedirects              more than ``max_redirects`` hops, or a redirect loop
    ├── BodyTooLarge                  more than ``max_body_bytes`` (decoded) bytes
    ├── BadResponse                   non-2xx status, bad encoding, or unusable content
    ├── NoValidRecord                 no ``did=`` TXT record, or an invalid one / well-known DID
    ├── AmbiguousRecords              more than one ``did=`` TXT record
    └── TransportFailure              connect/read error or per-request timeout
"""

from __future__ import annotations

from typing import ClassVar

from plc.errors import DidNotAvailable, InvalidInput, NotFound


class InvalidRequest(InvalidInput):
    """A parameter is missing or malformed (lexicon-level ``InvalidRequest``)."""

    xrpc_error: ClassVar[str] = "InvalidRequest"


class HandleNotFound(NotFound):
    """The handle does not resolve to a DID (or, when verified, not to one claiming it back).

    ``reason`` says why (for logs and the CLI); ``message`` is the PDS's fixed text, the only
    text an XRPC client sees.
    """

    xrpc_error: ClassVar[str] = "HandleNotFound"

    def __init__(self, reason: str = "no DID found") -> None:
        super().__init__("Unable to resolve handle")
        self.reason = reason
        self.kind = ""
        """The kinds of failure without details (``"dns: NoValidRecord; https: HostNotFound"``),
        short whatever the handle: what the negative cache keeps. Empty: not a lookup's."""
        self.cut_short = False
        """A lookup was still running when the deadline came (no answer, not a "no")."""


class DidNotFound(NotFound):
    """The DID resolution process found no current DID document (unregistered, unsupported
    method, unreachable or invalid did:web document)."""

    xrpc_error: ClassVar[str] = "DidNotFound"


class DidDeactivated(DidNotAvailable):
    """The DID existed but is deactivated: a tombstoned did:plc."""

    xrpc_error: ClassVar[str] = "DidDeactivated"


class FetchError(Exception):
    """One DNS or HTTP lookup failed; ``str(err)`` is a short reason (internal, bounded)."""


class UnsafeAddress(FetchError):
    """The host resolves to a loopback, private, link-local, multicast or reserved address."""


class UnsafeUrl(FetchError):
    """The URL's scheme, port or host is not one the resolver may fetch."""


class HostNotFound(FetchError):
    """The host name has no A or AAAA record."""


class TooManyRedirects(FetchError):
    """More than the allowed number of redirects, or a redirect back to a visited URL."""


class BodyTooLarge(FetchError):
    """The response body exceeds the byte cap."""


class BadResponse(FetchError):
    """A non-2xx status, an unsupported content encoding, or content that is not usable."""


class NoValidRecord(FetchError):
    """The lookup answered, but with no valid DID (no ``did=`` record, malformed value)."""


class AmbiguousRecords(FetchError):
    """More than one ``did=`` value in ``_atproto`` TXT records, even identical or invalid ones
    (resolution by DNS must fail, as in the reference resolver)."""


class TransportFailure(FetchError):
    """The connection failed or a per-request timeout expired."""
