"""Helpers the tests share: loading vectors, keys, building signed chains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plc.keys import Curve, PrivateKey
from plc.signing import create_did, update_operation

from .conftest import INTEROP

VALID_LOGS = sorted((INTEROP / "valid").glob("*.json"))
INVALID_LOGS = sorted((INTEROP / "invalid").glob("*.json"))

# Index of the first op each invalid log must be refused at (checked independently by the
# go-didplc and reference test suites; see shared/vectors/README.md).
INVALID_AT = {
    "log_invalid_nullification_reused_key.json": 2,
    "log_invalid_nullification_too_slow.json": 2,
    "log_invalid_sig_b64_newline.json": 0,
    "log_invalid_sig_b64_padding_bits.json": 0,
    "log_invalid_sig_b64_padding_chars.json": 0,
    "log_invalid_sig_der.json": 0,
    "log_invalid_sig_k256_high_s.json": 0,
    "log_invalid_sig_p256_high_s.json": 0,
    "log_invalid_update_nullified.json": 4,
    "log_invalid_update_tombstoned.json": 2,
}


def load_log(path: Path) -> list[dict[str, Any]]:
    value = json.loads(path.read_text())
    assert isinstance(value, list)
    return value


def key(seed: str, curve: Curve = Curve.K256) -> PrivateKey:
    return PrivateKey.from_seed(seed, curve)


def new_did(
    seed: str = "alice", curve: Curve = Curve.K256, handle: str | None = None
) -> tuple[str, dict[str, Any], list[PrivateKey]]:
    """A DID with two rotation keys (seeded) and its signed genesis op."""
    keys = [key(f"{seed}-rot0", curve), key(f"{seed}-rot1", curve)]
    did, genesis = create_did(keys, handle=handle or f"{seed}.example.com")
    return did, genesis, keys


def update(prev_op: dict[str, Any], signer: PrivateKey, **changes: Any) -> dict[str, Any]:
    """A signed update of ``prev_op`` (a plc_operation) with ``changes`` applied."""
    return update_operation(prev_op, signer, **changes)
