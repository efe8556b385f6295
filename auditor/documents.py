"""What a served DID document means, whatever its form (spot checks and ``check-evidence``).

plc.directory has served two forms of the same document (plc-spec-notes.md §2, §5): the current
one (``Multikey`` methods, ``<did>#name`` ids, the compressed did:key text) and the pre-2023-09
one, which the reference server still serves (``EcdsaSecp256k1VerificationKey2019`` /
``EcdsaSecp256r1VerificationKey2019``, ``#name`` ids, ``publicKeyMultibase`` = ``z`` + base58btc
of the uncompressed SEC1 point ``04‖X‖Y``). Both are compared by what they say: the DID,
``alsoKnownAs`` in order, each verification method's fragment and public key, each service's
fragment, type and endpoint. ``@context`` only follows the key encoding and is left out.
Decoding is base58's; curve checks and compression are :mod:`plc.keys`'s.
"""

from __future__ import annotations

from typing import Any

import base58

from plc.errors import PlcError
from plc.keys import DID_KEY_PREFIX, Curve, compressed_point, format_did_key, parse_did_key

_LEGACY_KEY_TYPES = {
    "EcdsaSecp256k1VerificationKey2019": Curve.K256,
    "EcdsaSecp256r1VerificationKey2019": Curve.P256,
}
_DOCUMENT_KEYS = frozenset({"@context", "id", "alsoKnownAs", "verificationMethod", "service"})
_METHOD_KEYS = frozenset({"id", "type", "controller", "publicKeyMultibase"})


def _legacy_key(key_type: str, multibase: str) -> str | None:
    """The compressed did:key a legacy verification method names, or None if its
    ``publicKeyMultibase`` is not ``z`` + base58btc of a 65-byte point of the type's curve."""
    if not multibase.startswith("z"):
        return None
    try:
        raw = base58.b58decode(multibase[1:])
    except ValueError:
        return None
    if len(raw) != 65 or raw[0] != 4:
        return None
    curve = _LEGACY_KEY_TYPES[key_type]
    try:
        return format_did_key(curve, compressed_point(curve, raw))
    except PlcError:
        return None


def _fragment(did: str, ref: Any) -> str | None:
    """``name`` of ``#name`` or ``<did>#name`` (both forms name the same entry), else None."""
    if not isinstance(ref, str):
        return None
    for prefix in ("#", did + "#"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return None


def _method(did: str, method: Any) -> tuple[str, str] | None:
    """``(fragment, key)`` of a verification method: ``key`` is the compressed did:key of a
    k256 or p256 key in either form (``Multikey`` or legacy), the text of any other key."""
    if not isinstance(method, dict) or method.keys() != _METHOD_KEYS:
        return None
    fragment = _fragment(did, method["id"])
    key_type, multibase = method["type"], method["publicKeyMultibase"]
    if fragment is None or method["controller"] != did or not isinstance(multibase, str):
        return None
    if key_type == "Multikey":
        try:
            return fragment, parse_did_key(DID_KEY_PREFIX + multibase).did_key
        except PlcError:
            return fragment, DID_KEY_PREFIX + multibase  # other key types: as written
    if isinstance(key_type, str) and key_type in _LEGACY_KEY_TYPES:
        key = _legacy_key(key_type, multibase)
        return None if key is None else (fragment, key)
    return None


def _service(did: str, service: Any) -> tuple[str, str, str] | None:
    """``(fragment, type, endpoint)`` of a service entry, or None if it is not one."""
    if not isinstance(service, dict) or service.keys() != {"id", "type", "serviceEndpoint"}:
        return None
    fragment = _fragment(did, service["id"])
    kind, endpoint = service["type"], service["serviceEndpoint"]
    if fragment is None or not isinstance(kind, str) or not isinstance(endpoint, str):
        return None
    return fragment, kind, endpoint


def document_meaning(doc: Any) -> tuple[Any, ...] | None:
    """``(did, alsoKnownAs, sorted (fragment, did:key) of the verification methods, sorted
    (fragment, type, endpoint) of the services)`` of a DID document in either form; None if
    ``doc`` is not a document of either form (unknown members included)."""
    if not isinstance(doc, dict) or doc.keys() | {"@context"} != _DOCUMENT_KEYS:
        return None
    did, aka = doc["id"], doc["alsoKnownAs"]
    methods, services = doc["verificationMethod"], doc["service"]
    if not isinstance(did, str) or not isinstance(aka, list):
        return None
    if not isinstance(methods, list) or not isinstance(services, list):
        return None
    keys = [_method(did, m) for m in methods]
    named = [_service(did, x) for x in services]
    if not all(isinstance(x, str) for x in aka) or None in keys or None in named:
        return None
    return did, tuple(aka), tuple(sorted(filter(None, keys))), tuple(sorted(filter(None, named)))


def same_document(served: Any, expected: dict[str, Any]) -> bool:
    """True if the served DID document means what ``expected`` (the core's
    :func:`plc.document.format_did_document`) does; a served body that is no document of
    either form, or names a key that cannot be decoded, does not."""
    meaning = document_meaning(expected)
    if meaning is None:  # nothing to compare by meaning: only the same body will do
        return bool(served == expected)
    return document_meaning(served) == meaning
