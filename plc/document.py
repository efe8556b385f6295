"""The DID document and ``/data`` shapes of a did:plc state (plc-spec-notes.md §5).

Current (since September 2023) Multikey form, as plc.directory serves it:

- ``@context``: DID v1 and Multikey v1, then per verification method (in map order) the
  secp256k1-2019 suite for a k256 key or the ecdsa-2019 suite for a p256 key, deduplicated;
- ``id``; ``alsoKnownAs`` (verbatim, may be empty);
- ``verificationMethod``: ``{"id": "<did>#<name>", "type": "Multikey", "controller": did,
  "publicKeyMultibase": key without "did:key:"}`` — full DID URL in ``id``;
- ``service``: ``{"id": "#<name>", "type", "serviceEndpoint"}`` — a relative fragment.

Maps are rendered in DAG-CBOR key order (length, then bytes): the order PostgreSQL ``jsonb``
gives the reference server. Rotation keys never appear in the document.
"""

from __future__ import annotations

from typing import Any

from plc.keys import DID_KEY_PREFIX, multikey_type
from plc.operation import DocumentData

DID_CONTEXT = "https://www.w3.org/ns/did/v1"
MULTIKEY_CONTEXT = "https://w3id.org/security/multikey/v1"
_SUITE_CONTEXT = {
    "k256": "https://w3id.org/security/suites/secp256k1-2019/v1",
    "p256": "https://w3id.org/security/suites/ecdsa-2019/v1",
}


def _key_order(name: str) -> tuple[int, bytes]:
    raw = name.encode("utf-8")
    return (len(raw), raw)


def canonical_items(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    """Items of ``mapping`` in DAG-CBOR key order (UTF-8 length, then bytes)."""
    return sorted(mapping.items(), key=lambda item: _key_order(item[0]))


def format_data(did: str, data: DocumentData) -> dict[str, Any]:
    """The ``GET /{did}/data`` body: ``{did, verificationMethods, rotationKeys, alsoKnownAs,
    services}`` with maps in canonical order."""
    return {
        "did": did,
        "verificationMethods": dict(canonical_items(data.verification_methods)),
        "rotationKeys": list(data.rotation_keys),
        "alsoKnownAs": list(data.also_known_as),
        "services": {
            name: {"type": svc["type"], "endpoint": svc["endpoint"]}
            for name, svc in canonical_items(data.services)
        },
    }


def format_did_document(did: str, data: DocumentData) -> dict[str, Any]:
    """The DID document of ``did`` in state ``data`` (``application/did+ld+json`` body)."""
    context = [DID_CONTEXT, MULTIKEY_CONTEXT]
    methods = []
    for name, did_key in canonical_items(data.verification_methods):
        suite = _SUITE_CONTEXT.get(multikey_type(did_key) or "")
        if suite is not None and suite not in context:
            context.append(suite)
        multibase = (
            did_key[len(DID_KEY_PREFIX) :] if did_key.startswith(DID_KEY_PREFIX) else did_key
        )
        methods.append(
            {
                "id": f"{did}#{name}",
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": multibase,
            }
        )
    services = [
        {"id": f"#{name}", "type": svc["type"], "serviceEndpoint": svc["endpoint"]}
        for name, svc in canonical_items(data.services)
    ]
    return {
        "@context": context,
        "id": did,
        "alsoKnownAs": list(data.also_known_as),
        "verificationMethod": methods,
        "service": services,
    }
