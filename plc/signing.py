"""Building and signing operations: what a PDS or a client does before ``POST /{did}``.

Pure: keys and values in, signed wire dicts out. Used by the tests, the load generator and
client tooling; the server never signs operations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from plc.codec import encode_b64url, encode_dag_cbor
from plc.did import did_for_genesis
from plc.keys import PrivateKey
from plc.operation import parse_operation


def sign_operation(unsigned: Mapping[str, Any], key: PrivateKey) -> dict[str, Any]:
    """Sign an op: DAG-CBOR of ``unsigned`` (no ``sig`` key), ECDSA-SHA256, 64-byte low-S
    r‖s, unpadded base64url (did:plc spec v0.3 "Operation Serialization, Signing").

    Returns:
        A new dict with ``sig`` added.
    """
    body = {k: v for k, v in unsigned.items() if k != "sig"}
    signed = dict(body)
    signed["sig"] = encode_b64url(key.sign(encode_dag_cbor(body)))
    return signed


def plc_operation(
    *,
    rotation_keys: Sequence[str],
    verification_methods: Mapping[str, str] | None = None,
    also_known_as: Sequence[str] = (),
    services: Mapping[str, Mapping[str, str]] | None = None,
    prev: str | None = None,
) -> dict[str, Any]:
    """An unsigned ``plc_operation`` wire dict."""
    return {
        "type": "plc_operation",
        "rotationKeys": list(rotation_keys),
        "verificationMethods": dict(verification_methods or {}),
        "alsoKnownAs": list(also_known_as),
        "services": {k: dict(v) for k, v in (services or {}).items()},
        "prev": prev,
    }


def update_operation(
    prev_op: Mapping[str, Any], signer: PrivateKey, **changes: Any
) -> dict[str, Any]:
    """A signed ``plc_operation`` extending the signed ``plc_operation`` ``prev_op``: its
    state carried over, with ``changes`` (keyword arguments of :func:`plc_operation`:
    ``rotation_keys``, ``verification_methods``, ``also_known_as``, ``services``) applied."""
    fields: dict[str, Any] = {
        "rotation_keys": prev_op["rotationKeys"],
        "verification_methods": prev_op["verificationMethods"],
        "also_known_as": prev_op["alsoKnownAs"],
        "services": prev_op["services"],
    }
    fields.update(changes)
    return sign_operation(plc_operation(prev=cid_of(prev_op), **fields), signer)


def tombstone(prev: str) -> dict[str, Any]:
    """An unsigned ``plc_tombstone`` wire dict."""
    return {"type": "plc_tombstone", "prev": prev}


def pds_services(endpoint: str) -> dict[str, dict[str, str]]:
    """The usual ``services`` map of an atproto account hosted at ``endpoint``."""
    return {"atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": endpoint}}


def create_did(
    rotation: Sequence[PrivateKey],
    *,
    signing_key: str | None = None,
    handle: str | None = None,
    pds: str = "https://pds.example.com",
    signer: PrivateKey | None = None,
) -> tuple[str, dict[str, Any]]:
    """A signed genesis op and the DID it creates.

    Args:
        rotation: rotation keys, most authority first.
        signing_key: the ``atproto`` verification method (default: the last rotation key).
        handle: recorded as ``at://<handle>``.
        pds: PDS endpoint.
        signer: the key that signs (default: ``rotation[0]``).
    """
    op = plc_operation(
        rotation_keys=[k.did_key for k in rotation],
        verification_methods={"atproto": signing_key or rotation[-1].did_key},
        also_known_as=[f"at://{handle}"] if handle else [],
        services=pds_services(pds),
    )
    signed = sign_operation(op, signer or rotation[0])
    return did_for_genesis(parse_operation(signed)), signed


def cid_of(signed: Mapping[str, Any]) -> str:
    """CID string of a signed op wire dict."""
    return parse_operation(dict(signed)).cid
