"""The presigned-op model of a load run: the DIDs the generator creates, their chains of
updates, and the state it expects the server to hold afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from plc.keys import Curve, PrivateKey
from plc.signing import create_did, pds_services, update_operation

UPDATE_KINDS = ("handle", "pds", "handle+aka", "rotate")


@dataclass
class Step:
    """One presigned update of a DID."""

    kind: str
    index: int
    body: bytes


@dataclass
class Identity:
    """A DID the generator creates, with the state it expects the server to hold."""

    index: int
    curve: Curve
    did: str
    genesis: bytes
    handle: str
    pds: str
    rotation_keys: list[str]
    steps: list[Step] = field(default_factory=list)
    created: bool = False
    broken: bool = False


def _other(curve: Curve) -> Curve:
    return Curve.P256 if curve is Curve.K256 else Curve.K256


def curve_for(index: int, key_mix: str) -> Curve:
    """The curve of DID ``index`` under ``key_mix``."""
    if key_mix == "mixed":
        return Curve.K256 if index % 2 == 0 else Curve.P256
    return Curve.K256 if key_mix == "secp256k1" else Curve(key_mix)


def presign(creates: int, updates: int, key_mix: str, run_tag: str) -> list[Identity]:
    """Build and sign ``creates`` genesis ops and ``updates`` update ops (update ``j`` goes to
    DID ``j % creates``) with keys of ``key_mix`` (:func:`curve_for`); untimed.

    Each DID has rotation keys ``[rot0, rot1]`` (rot1 of the other curve) and an
    ``atproto`` signing key; rot0 signs until a ``rotate`` update puts a fresh key first.
    """
    identities: list[Identity] = []
    last_ops: list[dict[str, Any]] = []
    signers: list[PrivateKey] = []
    for i in range(creates):
        curve = curve_for(i, key_mix)
        rot0, rot1 = PrivateKey.generate(curve), PrivateKey.generate(_other(curve))
        signing = PrivateKey.generate(curve)
        handle = f"u{i}-{run_tag}.loadpy.test"
        pds = f"https://pds{i % 7}.loadpy.test"
        did, genesis = create_did([rot0, rot1], signing_key=signing.did_key, handle=handle, pds=pds)
        identities.append(
            Identity(
                index=i,
                curve=curve,
                did=did,
                genesis=orjson.dumps(genesis),
                handle=handle,
                pds=pds,
                rotation_keys=[rot0.did_key, rot1.did_key],
            )
        )
        last_ops.append(genesis)
        signers.append(rot0)
    if not identities:
        return identities
    for j in range(updates):
        n = j % len(identities)
        ident, prev, signer = identities[n], last_ops[n], signers[n]
        kind = UPDATE_KINDS[j % len(UPDATE_KINDS)]
        aka: list[str] = list(prev["alsoKnownAs"])
        services: dict[str, dict[str, str]] = {k: dict(v) for k, v in prev["services"].items()}
        rotation: list[str] = list(prev["rotationKeys"])
        next_signer = signer
        if kind == "handle":
            ident.handle = f"u{n}-{run_tag}-h{j}.loadpy.test"
            aka = [f"at://{ident.handle}", *(a for a in aka if not a.startswith("at://"))]
        elif kind == "pds":
            ident.pds = f"https://pds{j % 13}-{j}.loadpy.test"
            services.update(pds_services(ident.pds))
        elif kind == "handle+aka":
            ident.handle = f"u{n}-{run_tag}-a{j}.loadpy.test"
            ident.pds = f"https://pds-a{j}.loadpy.test"
            aka = [f"at://{ident.handle}", f"https://u{n}-{j}.example.test"]
            services.update(pds_services(ident.pds))
        else:  # rotate: a fresh top-priority key; older keys shift down (5 kept)
            next_signer = PrivateKey.generate(ident.curve)
            rotation = [next_signer.did_key, *rotation][:5]
            ident.rotation_keys = rotation
        op = update_operation(
            prev, signer, rotation_keys=rotation, also_known_as=aka, services=services
        )
        ident.steps.append(Step(kind, j, orjson.dumps(op)))
        last_ops[n] = op
        signers[n] = next_signer
    return identities
