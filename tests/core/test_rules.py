"""The pure rules against the interop audit logs, and negative cases for every rule."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import cbor2
import libipld
import pytest

from plc.audit_log import ReplayFailure, parse_audit_log, replay_audit_log
from plc.did import did_for_genesis
from plc.errors import (
    GenesisHashMismatch,
    ImproperOperation,
    InvalidSignature,
    LateRecovery,
    MalformedOperation,
    MisorderedOperation,
)
from plc.operation import parse_operation
from plc.rules import RECOVERY_WINDOW, LogEntry, validate_next_op
from plc.signing import sign_operation, tombstone
from plc.timestamps import parse_timestamp

from ..helpers import INVALID_AT, INVALID_LOGS, VALID_LOGS, load_log, new_did, update


@pytest.mark.parametrize("path", VALID_LOGS, ids=lambda p: p.name)
def test_valid_logs_replay_with_same_nullified_flags(path: Path) -> None:
    raw = load_log(path)
    entries = parse_audit_log(raw)
    replayed = replay_audit_log(raw[0]["did"], entries)
    assert [e.cid for e in replayed] == [r["cid"] for r in raw]
    assert [e.nullified for e in replayed] == [r["nullified"] for r in raw]


@pytest.mark.parametrize("path", INVALID_LOGS, ids=lambda p: p.name)
def test_invalid_logs_fail_at_the_right_op(path: Path) -> None:
    raw = load_log(path)
    with pytest.raises(ReplayFailure) as failure:
        replay_audit_log(raw[0]["did"], parse_audit_log(raw))
    assert failure.value.index == INVALID_AT[path.name]


@pytest.mark.parametrize("path", VALID_LOGS + INVALID_LOGS, ids=lambda p: p.name)
def test_cids_and_genesis_dids(path: Path) -> None:
    raw = load_log(path)
    for entry in raw:
        op = parse_operation(entry["operation"])
        assert op.cid == entry["cid"]
        # an independent encoder agrees byte for byte
        assert cbor2.dumps(entry["operation"], canonical=True) == op.signed_cbor
    assert did_for_genesis(parse_operation(raw[0]["operation"])) == raw[0]["did"]


def _history(did: str, ops: list[dict], start) -> list[LogEntry]:  # type: ignore[no-untyped-def,type-arg]
    history: list[LogEntry] = []
    for i, op in enumerate(ops):
        prepared = validate_next_op(history, did, parse_operation(op), start + timedelta(hours=i))
        history.append(LogEntry(did, prepared.operation, prepared.created_at))
    return history


T0 = parse_timestamp("2026-01-01T00:00:00.000Z")


def test_genesis_rules() -> None:
    did, genesis, keys = new_did("g")
    assert validate_next_op([], did, parse_operation(genesis), T0).key_index == 0
    other, _, _ = new_did("other")
    with pytest.raises(GenesisHashMismatch):
        validate_next_op([], other, parse_operation(genesis), T0)
    unsigned = {k: v for k, v in genesis.items() if k != "sig"}
    by_stranger = sign_operation(unsigned, new_did("stranger")[2][0])
    with pytest.raises(InvalidSignature):
        validate_next_op([], did, parse_operation(by_stranger), T0)
    with_prev = sign_operation({**unsigned, "prev": parse_operation(genesis).cid}, keys[0])
    with pytest.raises(ImproperOperation):
        validate_next_op(
            [], did_for_genesis(parse_operation(with_prev)), parse_operation(with_prev), T0
        )
    tomb = sign_operation(tombstone(parse_operation(genesis).cid), keys[0])
    with pytest.raises(MisorderedOperation):
        validate_next_op([], did, parse_operation(tomb), T0)


def test_append_rules() -> None:
    did, genesis, keys = new_did("a")
    history = _history(did, [genesis], T0)
    op1 = update(genesis, keys[1], also_known_as=["at://new.example.com"])
    prepared = validate_next_op(history, did, parse_operation(op1), T0 + timedelta(hours=1))
    assert prepared.key_index == 1 and prepared.nullified == () and prepared.prev == history[0].cid
    # not later than prev
    with pytest.raises(MisorderedOperation):
        validate_next_op(history, did, parse_operation(op1), T0)
    # unknown prev
    stray = update(new_did("b")[1], keys[0])
    with pytest.raises(MisorderedOperation):
        validate_next_op(history, did, parse_operation(stray), T0 + timedelta(hours=1))
    # a key that is not a rotation key
    intruder = update(genesis, new_did("c")[2][0])
    with pytest.raises(InvalidSignature):
        validate_next_op(history, did, parse_operation(intruder), T0 + timedelta(hours=1))


def _with_prev(op: dict, prev: str, signer) -> dict:  # type: ignore[no-untyped-def,type-arg]
    unsigned = {k: v for k, v in op.items() if k != "sig"}
    return sign_operation({**unsigned, "prev": prev}, signer)


def test_prev_is_compared_as_a_cid_not_as_text() -> None:
    # The reference compares CID.parse(prev).equals(cid): a prev written in base58btc or
    # base36 names the same op; other bases, CIDv0 and garbage name none.
    did, genesis, keys = new_did("cid-forms")
    history = _history(did, [genesis], T0)
    raw = libipld.decode_multibase(history[0].cid)[1]
    later = T0 + timedelta(hours=1)
    for base in ("z", "k"):
        text = libipld.encode_multibase(base, raw)
        op = _with_prev(update(genesis, keys[0]), text, keys[0])
        prepared = validate_next_op(history, did, parse_operation(op), later)
        assert prepared.prev == history[0].cid  # the stored (base32) form
        assert parse_operation(op).data["prev"] == text  # what was signed is kept
    for text in (
        libipld.encode_multibase("f", raw),  # base16: not read by CID.parse without a decoder
        history[0].cid.upper(),
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0
        "z" + "1" * 40,
        # CID.parse refuses bytes after the CID ("Incorrect length") and upper-case base36;
        # libipld's decoder alone would read both as the genesis's CID.
        libipld.encode_multibase("z", raw + b"JUNK"),
        libipld.encode_multibase("k", raw + b"\x00"),
        "k" + libipld.encode_multibase("k", raw)[1:].upper(),
    ):
        op = _with_prev(update(genesis, keys[0]), text, keys[0])
        with pytest.raises(MisorderedOperation):
            validate_next_op(history, did, parse_operation(op), later)


def test_recovery_rules() -> None:
    did, genesis, keys = new_did("r")
    hijack = update(genesis, keys[1], also_known_as=["at://evil.example.com"])
    history = _history(did, [genesis, hijack], T0)
    first_nullified_at = history[1].created_at
    recovery = update(genesis, keys[0], also_known_as=["at://good.example.com"])
    ok = validate_next_op(
        history, did, parse_operation(recovery), first_nullified_at + RECOVERY_WINDOW
    )
    assert ok.nullified == (history[1].cid,) and ok.key_index == 0
    with pytest.raises(LateRecovery):
        validate_next_op(
            history,
            did,
            parse_operation(recovery),
            first_nullified_at + RECOVERY_WINDOW + timedelta(milliseconds=1),
        )
    same_key = update(genesis, keys[1], also_known_as=["at://again.example.com"])
    with pytest.raises(InvalidSignature):
        validate_next_op(
            history, did, parse_operation(same_key), first_nullified_at + timedelta(hours=1)
        )
    with pytest.raises(MisorderedOperation):
        validate_next_op(history, did, parse_operation(recovery), first_nullified_at)


def test_tombstone_blocks_children() -> None:
    did, genesis, keys = new_did("t")
    tomb = sign_operation(tombstone(parse_operation(genesis).cid), keys[1])
    history = _history(did, [genesis, tomb], T0)
    child = sign_operation(
        {**{k: v for k, v in genesis.items() if k != "sig"}, "prev": history[1].cid}, keys[0]
    )
    with pytest.raises(MisorderedOperation):
        validate_next_op(history, did, parse_operation(child), T0 + timedelta(hours=3))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda op: {**op, "extra": "field"},
        lambda op: {k: v for k, v in op.items() if k != "services"},
        lambda op: {**op, "prev": 1},
        lambda op: {**op, "rotationKeys": "did:key:z"},
        lambda op: {**op, "services": {"atproto_pds": {"type": "x", "endpoint": "y", "z": "w"}}},
        lambda op: {**op, "type": "plc_something"},
        lambda op: {**op, "alsoKnownAs": ["a\u0000b"]},
        lambda op: [op],
    ],
)
def test_schema_is_strict(mutate) -> None:  # type: ignore[no-untyped-def]
    _, genesis, _ = new_did("s")
    with pytest.raises(MalformedOperation):
        parse_operation(mutate(genesis))


def test_a_recovery_at_the_last_moment_a_date_holds_does_not_overflow() -> None:
    # an imported (unsigned) stamp can sit at the end of year 9999: 72 h after it is no date
    did, genesis, keys = new_did("end")
    hijack = update(genesis, keys[1], also_known_as=["at://evil.example.com"])
    end = parse_timestamp("9999-12-31T23:59:59.000Z")
    history: list[LogEntry] = []
    for op, at in ((genesis, end - timedelta(milliseconds=2)), (hijack, end)):
        accepted = validate_next_op(history, did, parse_operation(op), at)
        history.append(LogEntry(did, accepted.operation, accepted.created_at))
    recovery = update(genesis, keys[0], also_known_as=["at://good.example.com"])
    prepared = validate_next_op(
        history, did, parse_operation(recovery), end + timedelta(milliseconds=999)
    )
    assert prepared.nullified == (history[1].cid,) and prepared.valid_until is None
