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

from collections.abc import Sequence
from typing import Any

import orjson

from plc.errors import PlcError
from plc.keys import DID_KEY_PREFIX, multikey_type, parse_did_key
from plc.operation import (
    PLC_OPERATION,
    DocumentData,
    Operation,
    normalize,
    trusted_operation,
)

DID_CONTEXT = "https://www.w3.org/ns/did/v1"
MULTIKEY_CONTEXT = "https://w3id.org/security/multikey/v1"
DOCUMENTS_VERSION = 2
"""The rendering of the stored ``/data`` and DID-document bodies. Raised with every change here
that renders an existing state differently, so that ``plc serve`` can tell the operator that
the bodies stored before need ``plc refresh-documents``. 1: until 2026-11-30 (a suite context
for a k256 or p256 key that does not parse; a legacy handle's ``http://`` or ``https://``
removed only at its start); 2: since."""

_SUITE_CONTEXT = {
    "k256": "https://w3id.org/security/suites/secp256k1-2019/v1",
    "p256": "https://w3id.org/security/suites/ecdsa-2019/v1",
}


def _suite_context(did_key: str) -> str | None:
    """The suite context a verification method's key adds: only a k256 or p256 key that
    parses (plc-spec-notes.md §5; the multicodec alone is not enough)."""
    suite = _SUITE_CONTEXT.get(multikey_type(did_key) or "")
    if suite is None:
        return None
    try:
        parse_did_key(did_key)  # cached: the same few keys recur
    except PlcError:
        return None
    return suite


def _key_order(name: str) -> tuple[int, bytes]:
    raw = name.encode("utf-8")
    return (len(raw), raw)


def _item_order(item: tuple[str, Any]) -> tuple[int, bytes]:
    return _key_order(item[0])


def canonical_items(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    """Items of ``mapping`` in DAG-CBOR key order (UTF-8 length, then bytes)."""
    items = list(mapping.items())
    if len(items) > 1:  # one entry (the usual ``atproto`` / ``atproto_pds``) is in order
        items.sort(key=_item_order)
    return items


def format_data(did: str, data: DocumentData) -> dict[str, Any]:
    """The ``GET /{did}/data`` body: ``{did, verificationMethods, rotationKeys, alsoKnownAs,
    services}`` with maps in canonical order."""
    return _data_shape(
        did,
        canonical_items(data.verification_methods),
        data.rotation_keys,
        data.also_known_as,
        canonical_items(data.services),
    )


def format_did_document(did: str, data: DocumentData) -> dict[str, Any]:
    """The DID document of ``did`` in state ``data`` (``application/did+ld+json`` body)."""
    return _document_shape(
        did,
        canonical_items(data.verification_methods),
        data.also_known_as,
        canonical_items(data.services),
    )


def _data_shape(
    did: str,
    methods: list[tuple[str, str]],
    rotation_keys: Sequence[str],
    also_known_as: Sequence[str],
    services: list[tuple[str, Any]],
) -> dict[str, Any]:
    return {
        "did": did,
        "verificationMethods": dict(methods),
        "rotationKeys": list(rotation_keys),
        "alsoKnownAs": list(also_known_as),
        "services": {
            name: {"type": svc["type"], "endpoint": svc["endpoint"]} for name, svc in services
        },
    }


def _document_shape(
    did: str,
    methods: list[tuple[str, str]],
    also_known_as: Sequence[str],
    services: list[tuple[str, Any]],
) -> dict[str, Any]:
    context = [DID_CONTEXT, MULTIKEY_CONTEXT]
    doc_methods = []
    for name, did_key in methods:
        suite = _suite_context(did_key)
        if suite is not None and suite not in context:
            context.append(suite)
        multibase = (
            did_key[len(DID_KEY_PREFIX) :] if did_key.startswith(DID_KEY_PREFIX) else did_key
        )
        doc_methods.append(
            {
                "id": f"{did}#{name}",
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": multibase,
            }
        )
    return {
        "@context": context,
        "id": did,
        "alsoKnownAs": list(also_known_as),
        "verificationMethod": doc_methods,
        "service": [
            {"id": f"#{name}", "type": svc["type"], "serviceEndpoint": svc["endpoint"]}
            for name, svc in services
        ],
    }


def state_bodies(did: str, data: DocumentData) -> tuple[bytes, bytes]:
    """The stored ``/data`` and DID document bodies of a state: exactly
    ``orjson.dumps(format_data(did, data))`` and ``orjson.dumps(format_did_document(did,
    data))``, built in one pass (this runs for every accepted op)."""
    return _bodies(
        did, data.rotation_keys, data.verification_methods, data.also_known_as, data.services
    )


def operation_state_bodies(did: str, op: Operation) -> tuple[bytes, bytes] | None:
    """:func:`state_bodies` of the state ``op`` sets (None for a tombstone). A
    ``plc_operation`` is read as it is, without building its :class:`DocumentData`."""
    data = op.data
    if data["type"] == PLC_OPERATION:
        return _bodies(
            did,
            data["rotationKeys"],
            data["verificationMethods"],
            data["alsoKnownAs"],
            data["services"],
        )
    state = normalize(op)
    return None if state is None else state_bodies(did, state)


def head_state(did: str, cid: str, op_json: bytes) -> tuple[bool, bytes | None, bytes | None]:
    """``(tombstoned, data, document)`` of a DID whose head is the op ``op_json`` (its JSON
    bytes as stored in its export line; ``cid`` its CID): what the ``dids`` row holds, both
    bodies None for a tombstone.

    Raises:
        orjson.JSONDecodeError, KeyError, TypeError, ValueError: ``op_json`` is not an op this
            directory stored.
    """
    data = orjson.loads(op_json)
    if not isinstance(data, dict):
        raise ValueError("the stored op is not a JSON object")
    bodies = operation_state_bodies(did, trusted_operation(data, cid))
    return (True, None, None) if bodies is None else (False, *bodies)


def _bodies(
    did: str,
    rotation_keys: Sequence[str],
    verification_methods: dict[str, str],
    also_known_as: Sequence[str],
    services: dict[str, dict[str, str]],
) -> tuple[bytes, bytes]:
    # The maps are put in canonical order once for both bodies.
    methods = canonical_items(verification_methods)
    service_items = canonical_items(services)
    return (
        orjson.dumps(_data_shape(did, methods, rotation_keys, also_known_as, service_items)),
        orjson.dumps(_document_shape(did, methods, also_known_as, service_items)),
    )
