"""Standalone re-verification of a finding's evidence, with nothing but the pure core.

Imports only the standard library, ``orjson``, ``plc``'s pure modules and its other half,
:mod:`auditor.evidence_ops` (the per-operation classes; this file has the log classes) —
never the rest of ``auditor``: a third party can read these two files and check a finding
without trusting the auditor's replay code or the directory. Run as
``python -m auditor.evidence_check FILE [--vkey KEY]`` or ``plc-audit check-evidence FILE``;
FILE holds findings as JSON lines.

:func:`check_finding` returns ``"verified"`` (the evidence proves the claim on its own),
``"unverifiable"`` (the claim rests on data the evidence cannot carry, e.g. a whole export,
or on the auditor's word that the directory served a line) or raises
:class:`EvidenceRejected` (the evidence does not support the claim). Per-DID rule findings
are re-decided with the core's :func:`plc.rules.validate_next_op` over the DID's lines — an
implementation independent of the auditor's incremental rules (:mod:`auditor.chain`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from auditor.evidence_ops import (
    OP_CHECKS,
    UNVERIFIABLE,
    VERIFIED,
    EvidenceRejected,
    need,
)
from plc.errors import PlcError, VerificationError
from plc.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint_unsafe
from plc.tlog.encoding import decode_hash_b64
from plc.tlog.hashing import EMPTY_ROOT, leaf_hash
from plc.tlog.note import Verifier, parse_verifier_key
from plc.tlog.proof import verify_consistency, verify_inclusion

__all__ = ["UNVERIFIABLE", "VERIFIED", "EvidenceRejected", "check_finding", "main"]


def _checkpoint(note: str, verifiers: Sequence[Verifier]) -> Checkpoint:
    """Open a checkpoint with the given keys, or parse it unverified without keys."""
    try:
        return open_checkpoint(note, verifiers) if verifiers else parse_checkpoint_unsafe(note)
    except VerificationError as exc:
        raise EvidenceRejected(f"checkpoint does not verify: {exc.message}") from None


def _hashes(values: Sequence[str]) -> list[bytes]:
    return [decode_hash_b64(v) for v in values]


def _rewritten(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    stored = decode_hash_b64(ev["stored_leaf_hash"])
    served = ev.get("served_line")
    if served is not None:
        need(leaf_hash(served.encode("utf-8")) != stored, "the served line is the stored leaf")
    if ev.get("checkpoint") is None:
        return UNVERIFIABLE
    cp = _checkpoint(ev["checkpoint"], vkeys)
    index = ev["leaf_index"]
    try:
        verify_inclusion(stored, index, cp.tree_size, _hashes(ev["inclusion_proof"]), cp.root_hash)
    except VerificationError as exc:
        raise EvidenceRejected(f"stored leaf not in the checkpoint: {exc.message}") from None
    if served is not None and ev["kind"] == "changed":
        need(orjson.loads(served).get("seq") == index + 1, "served line has another seq")
    return VERIFIED


def _root_mismatch(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    cp = _checkpoint(ev["checkpoint"], vkeys)
    need(decode_hash_b64(ev["computed_root"]) != cp.root_hash, "the roots are equal")
    leaf = ev.get("leaf")
    if not leaf or leaf.get("line") is None:
        return UNVERIFIABLE  # needs the whole export to recompute the root
    index, theirs = leaf["leaf_index"], decode_hash_b64(leaf["directory_leaf_hash"])
    try:
        verify_inclusion(
            theirs, index, cp.tree_size, _hashes(leaf["inclusion_proof"]), cp.root_hash
        )
    except VerificationError as exc:
        raise EvidenceRejected(f"the directory's own proof fails: {exc.message}") from None
    line = leaf["line"].encode("utf-8")
    need(leaf_hash(line) != theirs, "the line is the checkpoint's leaf")
    need(orjson.loads(line).get("seq") == index + 1, "the line is not that leaf's seq")
    return VERIFIED


def _inconsistent(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    old, new = _checkpoint(ev["smaller"], vkeys), _checkpoint(ev["larger"], vkeys)
    need(old.origin == new.origin, "two different logs")
    if old.tree_size == new.tree_size:
        need(old.root_hash != new.root_hash, "same size, same root")
        return VERIFIED
    proof_texts: Any = ev.get("consistency_proof")
    if old.tree_size == 0:
        need(old.root_hash != EMPTY_ROOT, "the size-0 checkpoint has the empty root")
        return VERIFIED
    if isinstance(proof_texts, list):
        proof = _hashes(proof_texts)
        try:
            verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
        except VerificationError:
            return VERIFIED
        raise EvidenceRejected("the consistency proof verifies")
    local = ev.get("local")
    if not local:
        return UNVERIFIABLE  # the directory gave no proof and the auditor has none
    root = decode_hash_b64(local["root_at_smaller_size"])
    need(root != old.root_hash, "the new checkpoint's tree agrees with the old one")
    try:
        verify_consistency(
            old.tree_size, new.tree_size, root, new.root_hash, _hashes(local["consistency_proof"])
        )
    except VerificationError as exc:
        raise EvidenceRejected(f"the local consistency proof fails: {exc.message}") from None
    return VERIFIED


def _bad_signature(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    keys = list(vkeys) or [parse_verifier_key(k) for k in ev.get("vkey", [])]
    if not keys:
        return UNVERIFIABLE
    try:
        open_checkpoint(ev["checkpoint"], keys)
    except VerificationError:
        return VERIFIED
    raise EvidenceRejected("the checkpoint verifies")


def _split_view(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    if ev.get("covering_checkpoint") is None:
        return UNVERIFIABLE
    cover, other = (
        _checkpoint(ev["covering_checkpoint"], vkeys),
        _checkpoint(ev["other_checkpoint"], vkeys),
    )
    need(cover.origin == other.origin, "two different logs")
    root = decode_hash_b64(ev["root_at_other_size"])
    need(root != other.root_hash, "the roots agree")
    try:
        verify_consistency(
            other.tree_size,
            cover.tree_size,
            root,
            cover.root_hash,
            _hashes(ev["consistency_proof"]),
        )
    except VerificationError as exc:
        raise EvidenceRejected(f"the consistency proof fails: {exc.message}") from None
    return VERIFIED


_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any], Sequence[Verifier]], str]] = {
    **OP_CHECKS,
    "export-rewritten": _rewritten,
    "checkpoint-root-mismatch": _root_mismatch,
    "inconsistent-checkpoints": _inconsistent,
    "checkpoint-signature-invalid": _bad_signature,
    "split-view": _split_view,
}


def check_finding(finding: dict[str, Any], verifiers: Sequence[Verifier] = ()) -> str:
    """Re-verify one finding (its JSON object) from its evidence alone.

    Args:
        finding: ``{"class", "seq", "did", "cid", "evidence", ...}``.
        verifiers: the log's verifier keys, to check checkpoint signatures (without them
            checkpoints are taken as given).

    Returns:
        :data:`VERIFIED` or :data:`UNVERIFIABLE`.

    Raises:
        EvidenceRejected: the evidence does not support the claim (or is malformed).
    """
    check = _CHECKS.get(finding.get("class", ""))
    if check is None:
        raise EvidenceRejected(f"unknown finding class {finding.get('class')!r}")
    try:
        return check(finding, finding.get("evidence") or {}, verifiers)
    except EvidenceRejected:
        raise
    except (PlcError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise EvidenceRejected(f"malformed evidence: {exc!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m auditor.evidence_check FILE [--vkey KEY]...``: exit 0 if no evidence is
    rejected, 1 otherwise."""
    args = list(sys.argv[1:] if argv is None else argv)
    vkeys: list[Verifier] = []
    while "--vkey" in args:
        at = args.index("--vkey")
        vkeys.append(parse_verifier_key(args[at + 1]))
        del args[at : at + 2]
    if len(args) != 1:
        print("usage: python -m auditor.evidence_check FINDINGS.jsonl [--vkey KEY]...")
        return 1
    rejected = 0
    with open(args[0], "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            finding = orjson.loads(raw)
            try:
                verdict = check_finding(finding, vkeys)
            except EvidenceRejected as exc:
                rejected += 1
                verdict = f"REJECTED: {exc}"
            print(f"{number}: {finding.get('class')} seq={finding.get('seq')}: {verdict}")
    return 1 if rejected else 0


if __name__ == "__main__":
    raise SystemExit(main())
