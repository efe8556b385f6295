"""Identity resolution for atproto: handles and DIDs, bidirectionally verified (issue 5).

Library use::

    from plc.resolve import HttpPlcDocumentSource, IdentityResolver, ResolverSettings

    resolver = IdentityResolver(ResolverSettings(), HttpPlcDocumentSource("https://plc.directory"))
    info = await resolver.resolve_identity("atproto.com")   # {"did", "handle", "didDoc"}

Modules, one idea each: ``syntax`` (identifier rules), ``settings`` (``PLC_RESOLVE_*``),
``errors``, ``cache`` (TTL + LRU), ``safety`` (which addresses may be contacted),
``dnsclient`` (TXT, A/AAAA), ``fetch`` (bounded, checked HTTP GET), ``handle`` (handle -> DID),
``did`` (DID -> document), ``lookups`` (identical lookups merged, per-domain caps),
``resolver`` (verification, caching, time budget), ``cli``.
The XRPC endpoints live in ``plc.api.routes.identity``.
"""

from plc.resolve.cache import ResolutionCache
from plc.resolve.did import (
    HttpPlcDocumentSource,
    PlcDocumentSource,
    claimed_handle,
)
from plc.resolve.errors import (
    DidDeactivated,
    DidNotFound,
    FetchError,
    HandleNotFound,
    InvalidRequest,
    UnsafeAddress,
)
from plc.resolve.resolver import IdentityInfo, IdentityResolver
from plc.resolve.safety import AddressPolicy, is_public_address
from plc.resolve.settings import ResolverSettings
from plc.resolve.syntax import (
    DISALLOWED_TLDS,
    INVALID_HANDLE,
    has_disallowed_tld,
    is_resolvable_handle,
    is_valid_at_identifier,
    is_valid_did,
    is_valid_handle,
    is_valid_plc_did,
    normalize_handle,
)

__all__ = [
    "DISALLOWED_TLDS",
    "INVALID_HANDLE",
    "AddressPolicy",
    "DidDeactivated",
    "DidNotFound",
    "FetchError",
    "HandleNotFound",
    "HttpPlcDocumentSource",
    "IdentityInfo",
    "IdentityResolver",
    "InvalidRequest",
    "PlcDocumentSource",
    "ResolutionCache",
    "ResolverSettings",
    "UnsafeAddress",
    "claimed_handle",
    "has_disallowed_tld",
    "is_public_address",
    "is_resolvable_handle",
    "is_valid_at_identifier",
    "is_valid_did",
    "is_valid_handle",
    "is_valid_plc_did",
    "normalize_handle",
]
