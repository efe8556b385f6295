"""Verification of GET /{did}/log/proof bundles (plc.tlog.bundle)."""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import pytest

from plc.tlog.bundle import build_did_log_proof, verify_did_log_proof
from plc.tlog.checkpoint import Checkpoint, sign_checkpoint
from plc.tlog.encoding import decode_b64, encode_b64
from plc.tlog.errors import (
    DidMismatch,
    EntryMismatch,
    InclusionProofError,
    MalformedBundle,
    MalformedCheckpoint,
    MalformedNote,
    MalformedProof,
    OriginMismatch,
    RootMismatch,
    SignatureError,
    UnknownKey,
)
from plc.tlog.hashing import leaf_hash
from plc.tlog.memory import MemoryHashStore
from plc.tlog.note import Signer, sign_note
from plc.tlog.proof import inclusion_proof

from .helpers import flip_bit

ORIGIN = "plc.example/tlog"
DIDS = ["did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"]
DID = DIDS[0]


def _line(seq: int, did: str, override: dict[str, Any] | None = None) -> str:
    record: dict[str, Any] = {
        "did": did,
        "cid": f"bafyreib{seq:052d}",
        "seq": seq,
        "createdAt": f"2026-01-01T00:00:{seq % 60:02d}.000Z",
        "operation": {"type": "plc_operation", "alsoKnownAs": [f"at://h\u00e9llo{seq}.test"]},
        "type": "sequenced_op",
    }
    record.update(override or {})
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


@cache
def _log() -> tuple[tuple[str, ...], MemoryHashStore, Signer, str]:
    """30 good lines alternating between two DIDs, then four bad lines of DID A."""
    lines = [_line(seq, DIDS[seq % 2]) for seq in range(1, 31)]
    lines += [
        _line(31, DID, {"seq": 99}),  # seq in the line differs from its position
        _line(32, DID, {"type": "not_sequenced"}),
        "not json at all",
        f'{{"did":"{DIDS[1]}","did":"{DID}","seq":34,"type":"sequenced_op"}}',
    ]
    store = MemoryHashStore()
    store.append([leaf_hash(line.encode("utf-8")) for line in lines])
    signer = Signer.generate(ORIGIN)
    note = sign_checkpoint(Checkpoint(ORIGIN, store.tree_size, store.root_hash()), signer)
    return tuple(lines), store, signer, note


def _bundle(did: str = DID, seqs: list[int] | None = None) -> dict[str, Any]:
    lines, store, _, note = _log()
    if seqs is None:
        seqs = [seq for seq in range(1, 31) if DIDS[seq % 2] == did]
    entries = [
        (seq, lines[seq - 1].encode("utf-8"), inclusion_proof(seq - 1, store.tree_size, store))
        for seq in seqs
    ]
    return build_did_log_proof(did, note, entries)


def _verifier() -> Any:
    return _log()[2].verifier


def test_valid_bundle_verifies() -> None:
    bundle = _bundle()
    result = verify_did_log_proof(bundle, _verifier(), origin=ORIGIN)
    assert result.did == DID
    assert result.checkpoint.tree_size == 34
    assert [e.seq for e in result.entries] == list(range(2, 31, 2))
    first = result.entries[0]
    assert first.leaf_index == 1
    assert first.line == _log()[0][1]
    assert first.leaf_hash == leaf_hash(first.line.encode("utf-8"))
    assert first.record["did"] == DID
    # The bundle survives a JSON round trip (what a client receives).
    verify_did_log_proof(json.loads(json.dumps(bundle)), [_verifier()])


def test_altering_any_character_of_a_line_fails() -> None:
    bundle = _bundle()
    for position, entry in enumerate(bundle["entries"][:3]):
        line = entry["line"]
        for i in range(len(line)):
            bad = copy.deepcopy(bundle)
            bad["entries"][position]["line"] = line[:i] + chr(ord(line[i]) ^ 1) + line[i + 1 :]
            with pytest.raises(RootMismatch) as info:
                verify_did_log_proof(bad, _verifier())
            assert f"seq {entry['seq']}" in info.value.what


def test_altering_any_bit_of_a_proof_hash_fails() -> None:
    bundle = _bundle()
    entry_proof = bundle["entries"][1]["inclusionProof"]
    for index, text in enumerate(entry_proof):
        for bit in range(0, 256, 7):
            bad = copy.deepcopy(bundle)
            bad["entries"][1]["inclusionProof"][index] = encode_b64(flip_bit(decode_b64(text), bit))
            with pytest.raises(RootMismatch):
                verify_did_log_proof(bad, _verifier())


def test_altering_a_character_of_a_proof_text_fails() -> None:
    bundle = _bundle()
    text = bundle["entries"][0]["inclusionProof"][0]
    for i in range(len(text)):
        bad = copy.deepcopy(bundle)
        bad["entries"][0]["inclusionProof"][0] = text[:i] + chr(ord(text[i]) ^ 1) + text[i + 1 :]
        with pytest.raises((MalformedProof, RootMismatch)):
            verify_did_log_proof(bad, _verifier())


def test_altering_any_character_of_the_checkpoint_fails() -> None:
    bundle = _bundle()
    note = bundle["checkpoint"]
    for i in range(len(note)):
        bad = dict(bundle, checkpoint=note[:i] + chr(ord(note[i]) ^ 1) + note[i + 1 :])
        with pytest.raises((MalformedNote, SignatureError, UnknownKey)):
            verify_did_log_proof(bad, _verifier())


def test_altering_a_seq_fails() -> None:
    bundle = _bundle()
    for position in range(len(bundle["entries"])):
        for delta in (-2, -1, 1, 2, 1000):
            bad = copy.deepcopy(bundle)
            bad["entries"][position]["seq"] += delta
            with pytest.raises((RootMismatch, InclusionProofError, MalformedBundle)):
                verify_did_log_proof(bad, _verifier())


def test_proven_lines_of_the_wrong_did_seq_or_type() -> None:
    cases = [
        (DIDS[1], 2, "did", DIDS[1], DID),  # a genuine op of another DID
        (DID, 31, "seq", 31, 99),
        (DID, 32, "type", "sequenced_op", "not_sequenced"),
        (DID, 33, "line", "a JSON object", "not json at all"),
        (DID, 34, "line", "a JSON object", _log()[0][33]),  # duplicate "did" keys
    ]
    for did, seq, field, expected, actual in cases:
        with pytest.raises(EntryMismatch) as info:
            verify_did_log_proof(_bundle(did, [seq]), _verifier())
        assert (info.value.field, info.value.expected, info.value.actual) == (
            field,
            expected,
            actual,
        )
        assert info.value.leaf_index == seq - 1


def test_wrong_key_and_origin() -> None:
    with pytest.raises(UnknownKey):
        verify_did_log_proof(_bundle(), Signer.generate(ORIGIN).verifier)
    with pytest.raises(OriginMismatch):
        verify_did_log_proof(_bundle(), _verifier(), origin="other.example/tlog")


def test_a_bundle_about_another_did_than_asked() -> None:
    assert verify_did_log_proof(_bundle(), _verifier(), did=DID).did == DID
    with pytest.raises(DidMismatch) as info:
        verify_did_log_proof(_bundle(DIDS[1]), _verifier(), did=DID)
    assert (info.value.expected, info.value.actual) == (DID, DIDS[1])


def test_only_the_key_named_after_the_origin_vouches_for_the_checkpoint() -> None:
    # a witness's key given beside the log's must not make its own signature of a
    # checkpoint carrying the log's origin count as the log's
    bundle = _bundle()
    witness = Signer.generate("witness.example/w1")
    _, store, _, _ = _log()
    forged = sign_checkpoint(Checkpoint(ORIGIN, store.tree_size, store.root_hash()), witness)
    with pytest.raises(UnknownKey):
        verify_did_log_proof(dict(bundle, checkpoint=forged), [_verifier(), witness.verifier])
    verify_did_log_proof(bundle, [_verifier(), witness.verifier])  # the log's own still counts


@pytest.mark.parametrize("body", [[], "x", None, 3, True])
def test_a_body_that_is_no_object(body: Any) -> None:
    with pytest.raises(MalformedBundle, match="not a JSON object"):
        verify_did_log_proof(body, _verifier())


def _reshape(change: Any) -> dict[str, Any]:
    bundle = copy.deepcopy(_bundle())
    change(bundle)
    return bundle


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda b: b.pop("did"), MalformedBundle),
        (lambda b: b.update(did=7), MalformedBundle),
        (lambda b: b.pop("checkpoint"), MalformedBundle),
        (lambda b: b.update(entries=[]), MalformedBundle),
        (lambda b: b.update(entries={}), MalformedBundle),
        (lambda b: b["entries"].append("x"), MalformedBundle),
        (lambda b: b["entries"][0].update(seq=True), MalformedBundle),
        (lambda b: b["entries"][0].update(seq="2"), MalformedBundle),
        (lambda b: b["entries"][0].update(seq=0), MalformedBundle),
        (lambda b: b["entries"][0].pop("line"), MalformedBundle),
        (lambda b: b["entries"][0].update(line="\ud800"), MalformedBundle),
        (lambda b: b["entries"][0].update(inclusionProof="AAAA"), MalformedBundle),
        (lambda b: b["entries"][0]["inclusionProof"].append(3), MalformedProof),
        (lambda b: b["entries"][0]["inclusionProof"].append("AAAA"), MalformedProof),
        (lambda b: b["entries"][0]["inclusionProof"].pop(), InclusionProofError),
        (lambda b: b["entries"].reverse(), MalformedBundle),
        (lambda b: b["entries"].append(b["entries"][-1]), MalformedBundle),
        (lambda b: b["entries"][0].update(seq=35), InclusionProofError),
        (
            lambda b: b.update(checkpoint=b["checkpoint"].replace("\n34\n", "\n034\n")),
            SignatureError,
        ),
    ],
)
def test_malformed_bundles(change: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        verify_did_log_proof(_reshape(change), _verifier())


def test_signed_garbage_checkpoint() -> None:
    _, _, signer, _ = _log()
    bundle = dict(_bundle(), checkpoint=sign_note("not a checkpoint\n", signer))
    with pytest.raises(MalformedCheckpoint):
        verify_did_log_proof(bundle, signer.verifier)
