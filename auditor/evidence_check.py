"""Standalone re-verification of a finding's evidence, with nothing but the pure core.

Imports only the standard library, ``orjson``, ``plc``'s pure modules and its other parts:
:mod:`auditor.evidence_ops` (the per-operation classes; this file has the log classes),
:mod:`auditor.evidence_served` (answers served unsigned), :mod:`auditor.evidence_time`
(``createdAt`` against ``seq`` and the clock), :mod:`auditor.evidence_chain` (per-DID rule
findings that extend an earlier one of the file) and :mod:`auditor.documents` — never the
rest of ``auditor``: a third party can read these files and check a finding without
trusting the auditor's replay code or the directory. Run as
``python -m auditor.evidence_check FILE [--vkey KEY]`` or ``plc-audit check-evidence FILE``;
FILE holds findings as JSON lines.

Each finding gets one verdict (:func:`verdict`):

- ``verified``: the evidence alone proves the claim. Signed checkpoints count only when
  they verify with a ``--vkey`` key (without one, a claim resting on a checkpoint is at most
  unverifiable). Export lines carry no signature of the log: a verified per-op finding
  proves what the lines it carries show (this op breaks the rules after those).
- ``unverifiable: <why>``: the claim rests on the auditor's observation of something the
  evidence cannot carry or prove — the order or absence of lines in a whole export, an
  unsigned answer (a DID document, an audit log, a checkpoint that does not verify, a line
  served where the signed tree has another), a root recomputed from a whole export — or on
  a checkpoint whose signature was not checked.
- rejected (:class:`EvidenceRejected`): the evidence does not support the claim, e.g. a
  consistency proof that does not verify proves nothing, one that verifies against both
  checkpoints disproves the claim.

Per-DID rule findings are re-decided with the core's :func:`plc.rules.validate_next_op` over
the DID's lines — an implementation independent of the auditor's incremental rules
(:mod:`auditor.chain`).

Exit codes of :func:`main`: 0 every finding verified, 3 none rejected but some unverifiable,
1 some rejected (or the file or a key could not be read).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from auditor.evidence_chain import FindingsIndex
from auditor.evidence_ops import (
    MALFORMED,
    OBSERVED,
    OP_CHECKS,
    RULE_CLASSES,
    UNVERIFIABLE,
    VERIFIED,
    EvidenceRejected,
    need,
    status_of,
    unverifiable,
)
from auditor.evidence_served import SERVED_CHECKS
from auditor.evidence_time import TIME_CHECKS
from plc.errors import PlcError, VerificationError
from plc.tlog.checkpoint import (
    Checkpoint,
    open_checkpoint,
    open_log_checkpoint,
    parse_checkpoint_unsafe,
)
from plc.tlog.encoding import decode_hash_b64
from plc.tlog.errors import RootMismatch, UnknownKey
from plc.tlog.hashing import EMPTY_ROOT, leaf_hash
from plc.tlog.note import Verifier, parse_verifier_key
from plc.tlog.proof import verify_consistency, verify_inclusion

__all__ = [
    "UNVERIFIABLE",
    "VERIFIED",
    "EvidenceRejected",
    "FindingsIndex",
    "check_finding",
    "implied_old_root",
    "main",
    "status_of",
    "verdict",
    "verdicts",
]

EXIT_VERIFIED, EXIT_REJECTED, EXIT_UNVERIFIABLE = 0, 1, 3
NOTE_CLASSES = frozenset(
    {
        "export-rewritten",
        "checkpoint-root-mismatch",
        "checkpoint-entries-withheld",
        "inconsistent-checkpoints",
        "split-view",
    }
)
"""Classes whose proof rests on signed checkpoints: verified only with the log's key."""
_NO_KEY = "no --vkey: the checkpoints' signatures were not checked"


def _checkpoints(notes: Sequence[str], verifiers: Sequence[Verifier]) -> list[Checkpoint]:
    """Open checkpoint notes that one of the ``verifiers`` signed, the same key for all of
    them, under its own name as their origin (:func:`~plc.tlog.checkpoint.open_log_checkpoint`,
    as ``sync`` opens them; and two keys cannot make a pair); without keys, parse them
    unverified.

    Raises:
        EvidenceRejected: a note does not verify that way, or is not a checkpoint.
    """
    try:
        if not verifiers:
            return [parse_checkpoint_unsafe(note) for note in notes]
        failures: list[VerificationError] = []
        for key in verifiers:
            try:
                return [open_log_checkpoint(note, [key]) for note in notes]
            except VerificationError as exc:
                failures.append(exc)
        # the reason a key of the right name gave, if any (not "unknown key" from another)
        telling = [f for f in failures if not isinstance(f, UnknownKey)]
        raise (telling or failures)[0]
    except VerificationError as exc:
        raise EvidenceRejected(f"checkpoint does not verify: {exc.message}") from None


def _checkpoint(note: str, verifiers: Sequence[Verifier]) -> Checkpoint:
    """:func:`_checkpoints` of one note."""
    return _checkpoints([note], verifiers)[0]


def _hashes(values: Sequence[str]) -> list[bytes]:
    return [decode_hash_b64(v) for v in values]


def implied_old_root(
    old_size: int, new_size: int, new_root: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """The root at ``old_size`` that a consistency proof to ``(new_size, new_root)`` commits
    to, or None: the proof does not verify against ``new_root``, or does not carry the old
    root (``old_size`` a power of two: the old root is the seed of the proof, not one of its
    hashes; RFC 9162 §2.1.4.2 step 2). The old root is the ``fr`` of step 6, which step 7
    compares first; the result is checked with a full verification."""
    if not 0 < old_size < new_size or old_size & (old_size - 1) == 0:
        return None
    try:
        verify_consistency(old_size, new_size, EMPTY_ROOT, new_root, proof)
    except RootMismatch as exc:
        if exc.what != "old root hash":
            return None
        candidate = exc.actual
    except VerificationError:
        return None
    else:
        return EMPTY_ROOT
    try:
        verify_consistency(old_size, new_size, candidate, new_root, proof)
    except VerificationError:
        return None
    return candidate


def _rewritten(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    """The stored leaf must be leaf ``leaf_index`` of the checkpoint, and a served line must
    differ from it (naming that ``seq`` for ``changed``). Never verified: that the directory
    served that line is the auditor's observation (lines are unsigned, and anyone can write
    a line that is not the signed leaf); ``missing`` / ``duplicated`` / ``reordered`` /
    ``inserted`` are claims about the whole second read (what it lacks, where else an op
    was, an op it has that the first read had nowhere). A rewrite the directory signed
    shows as ``inconsistent-checkpoints``, which is verified."""
    kind = ev["kind"]
    kinds = ("changed", "missing", "duplicated", "reordered", "inserted")
    need(kind in kinds, f"unknown kind {kind!r}")
    stored = decode_hash_b64(ev["stored_leaf_hash"])
    served = ev.get("served_line")
    if served is not None:
        need(leaf_hash(served.encode("utf-8")) != stored, "the served line is the stored leaf")
    index = ev["leaf_index"]
    need(type(index) is int and index >= 0, "leaf_index is not a leaf index")
    if ev.get("checkpoint") is None:
        return unverifiable(f"no signed checkpoint covers the leaf: it is {OBSERVED}")
    cp = _checkpoint(ev["checkpoint"], vkeys)
    try:
        verify_inclusion(stored, index, cp.tree_size, _hashes(ev["inclusion_proof"]), cp.root_hash)
    except VerificationError as exc:
        raise EvidenceRejected(f"stored leaf not in the checkpoint: {exc.message}") from None
    if kind != "changed" or served is None:
        return unverifiable(f"a {kind} op in a second read of the whole export is {OBSERVED}")
    need(orjson.loads(served).get("seq") == index + 1, "served line has another seq")
    return unverifiable(
        f"the signed leaf is proven; that the directory served another line at its seq is "
        f"{OBSERVED} (lines are unsigned)"
    )


def _root_mismatch(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    """The checkpoint's root must differ from the computed one; with a ``leaf``, the
    directory's own inclusion proof of its leaf must verify and the line read at that
    ``seq`` must differ from it. Never verified: the root recomputed from a whole export,
    and the line read there (unsigned), are the auditor's observation."""
    cp = _checkpoint(ev["checkpoint"], vkeys)
    need(decode_hash_b64(ev["computed_root"]) != cp.root_hash, "the roots are equal")
    leaf = ev.get("leaf")
    if not leaf:
        return unverifiable(f"the root recomputed from the whole export is {OBSERVED}")
    index, theirs = leaf["leaf_index"], decode_hash_b64(leaf["directory_leaf_hash"])
    need(type(index) is int and 0 <= index < cp.tree_size, "leaf_index is not in the tree")
    try:
        verify_inclusion(
            theirs, index, cp.tree_size, _hashes(leaf["inclusion_proof"]), cp.root_hash
        )
    except VerificationError as exc:
        raise EvidenceRejected(f"the directory's own proof fails: {exc.message}") from None
    unserved = leaf.get("unserved_seq")
    if unserved is not None:
        need(unserved == index + 1, "unserved_seq is not that leaf's seq")
        return unverifiable(
            f"the export never served seq {unserved}, the checkpoint's leaf {index}: that "
            f"absence is {OBSERVED}"
        )
    if leaf.get("line") is None:
        return unverifiable(f"the line read there, no longer served as read, is {OBSERVED}")
    line = leaf["line"].encode("utf-8")
    need(leaf_hash(line) != theirs, "the line is the checkpoint's leaf")
    need(orjson.loads(line).get("seq") == index + 1, "the line is not that leaf's seq")
    return unverifiable(
        f"the checkpoint's leaf is proven; that the directory served another line at its seq "
        f"is {OBSERVED} (lines are unsigned)"
    )


def _withheld(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    """The checkpoint must be larger than the entries read and cover the unserved ``seq``
    (with the checkpoint's own leaf there, when given, proven by its inclusion proof); that
    the export went past its size without that ``seq`` is the auditor's observation."""
    cp = _checkpoint(ev["checkpoint"], vkeys)
    read, last, unserved = ev["entries_read"], ev["last_seq"], ev["unserved_seq"]
    need(all(type(v) is int for v in (read, last, unserved)), "counts are not integers")
    need(
        read < cp.tree_size <= last,
        "the entries read reach the checkpoint, or the export did not go past it",
    )
    need(1 <= unserved <= cp.tree_size, "the unserved seq is not in the checkpoint's tree")
    leaf = ev.get("leaf")
    if leaf:
        need(leaf["leaf_index"] == unserved - 1, "the leaf is not the unserved seq's")
        try:
            verify_inclusion(
                decode_hash_b64(leaf["directory_leaf_hash"]),
                unserved - 1,
                cp.tree_size,
                _hashes(leaf["inclusion_proof"]),
                cp.root_hash,
            )
        except VerificationError as exc:
            raise EvidenceRejected(f"the directory's own proof fails: {exc.message}") from None
    return unverifiable(
        f"that the export reached seq {last} without serving seq {unserved} is {OBSERVED}"
    )


def _inconsistent(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    """Two signed checkpoints of one origin that no single tree can have: the same size with
    different roots, size 0 with a root that is not the empty root, or a consistency proof
    that verifies against the larger one's root from a root at the smaller size that is not
    the smaller one's (``root_at_smaller_size``; evidence written before it existed: the old
    root the proof implies). A proof that does not verify proves nothing."""
    old, new = _checkpoints([ev["smaller"], ev["larger"]], vkeys)
    need(old.origin == new.origin, "two different logs")
    need(old.tree_size <= new.tree_size, "the smaller checkpoint is the larger")
    if old.tree_size == new.tree_size:
        need(old.root_hash != new.root_hash, "same size, same root")
        return VERIFIED
    if old.tree_size == 0:
        need(old.root_hash != EMPTY_ROOT, "the size-0 checkpoint has the empty root")
        return VERIFIED
    proof_texts: Any = ev.get("consistency_proof")
    root_text: Any = ev.get("root_at_smaller_size")
    local = ev.get("local")  # the evidence of earlier versions, computed from the entries
    if isinstance(local, dict) and not isinstance(root_text, str):
        proof_texts, root_text = local["consistency_proof"], local["root_at_smaller_size"]
    need(isinstance(proof_texts, list), "no consistency proof")
    proof = _hashes(proof_texts)
    try:
        verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
    except VerificationError:
        pass
    else:
        raise EvidenceRejected("the consistency proof verifies: the checkpoints are consistent")
    if isinstance(root_text, str):
        root: bytes | None = decode_hash_b64(root_text)
    else:
        root = implied_old_root(old.tree_size, new.tree_size, new.root_hash, proof)
    need(root is not None, "the consistency proof does not verify against the larger root")
    assert root is not None
    need(root != old.root_hash, "the larger checkpoint's tree agrees with the smaller one")
    try:
        verify_consistency(old.tree_size, new.tree_size, root, new.root_hash, proof)
    except VerificationError as exc:
        raise EvidenceRejected(f"the consistency proof does not verify: {exc.message}") from None
    return VERIFIED


def _bad_signature(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    """The note must not verify with the log's key (``--vkey``, else the key the auditor
    names); a note the log did not sign proves nothing about who served it."""
    keys = list(vkeys) or [parse_verifier_key(k) for k in ev.get("vkey", [])]
    if keys:
        try:
            open_checkpoint(ev["checkpoint"], keys)
        except VerificationError:
            pass
        else:
            raise EvidenceRejected("the checkpoint verifies")
    return unverifiable(f"a note the log's key did not sign: that it was served is {OBSERVED}")


def _split_view(finding: dict[str, Any], ev: dict[str, Any], vkeys: Sequence[Verifier]) -> str:
    if ev.get("covering_checkpoint") is None:
        return unverifiable("the entries the two auditors read are their own observation")
    cover, other = _checkpoints([ev["covering_checkpoint"], ev["other_checkpoint"]], vkeys)
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
    **SERVED_CHECKS,
    **TIME_CHECKS,
    "export-rewritten": _rewritten,
    "checkpoint-root-mismatch": _root_mismatch,
    "checkpoint-entries-withheld": _withheld,
    "inconsistent-checkpoints": _inconsistent,
    "checkpoint-signature-invalid": _bad_signature,
    "split-view": _split_view,
}


def verdict(
    finding: Any, verifiers: Sequence[Verifier] = (), index: FindingsIndex | None = None
) -> str:
    """Re-verify one finding (its JSON object) from its evidence alone (and, for a per-DID
    rule finding that extends an earlier one, that one's lines, from ``index``).

    Args:
        finding: ``{"class", "seq", "did", "cid", "evidence", ...}``.
        verifiers: the log's verifier keys, to check checkpoint signatures (without them
            checkpoints are parsed unverified, and claims resting on them are unverifiable).
        index: the findings of the file ``finding`` is in (:mod:`auditor.evidence_chain`).

    Returns:
        ``"verified"`` or ``"unverifiable: <why>"``.

    Raises:
        EvidenceRejected: the evidence does not support the claim (or is malformed).
    """
    need(isinstance(finding, dict), "not a finding (a JSON object)")
    cls = finding.get("class")
    check = _CHECKS.get(cls) if isinstance(cls, str) else None
    if check is None:
        raise EvidenceRejected(f"unknown finding class {cls!r}")
    evidence = finding.get("evidence") or {}
    need(isinstance(evidence, dict), "the evidence is not a JSON object")
    try:
        if cls in RULE_CLASSES and index is not None:
            result = index.rule_verdict(finding)
        else:
            need("extends" not in evidence, "it extends an earlier finding: check it with its file")
            result = check(finding, evidence, verifiers)
    except EvidenceRejected:
        raise
    except (RecursionError, *MALFORMED) as exc:
        raise EvidenceRejected(f"malformed evidence: {exc!r}") from None
    if result == VERIFIED and not verifiers and cls in NOTE_CLASSES:
        return unverifiable(_NO_KEY)
    return result


def check_finding(
    finding: Any, verifiers: Sequence[Verifier] = (), index: FindingsIndex | None = None
) -> str:
    """:func:`verdict` without the reason: :data:`VERIFIED` or :data:`UNVERIFIABLE`.

    Raises:
        EvidenceRejected: the evidence does not support the claim (or is malformed).
    """
    return status_of(verdict(finding, verifiers, index))


def verdicts(findings: Sequence[Any], verifiers: Sequence[Verifier] = ()) -> list[str]:
    """:func:`verdict` of every finding of one findings file (as JSON objects, in order),
    each resolved against the others.

    Raises:
        EvidenceRejected: the first finding whose evidence does not support its claim.
    """
    index = FindingsIndex(findings)
    return [verdict(finding, verifiers, index) for finding in findings]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m auditor.evidence_check FILE [--vkey KEY]...``: one verdict per finding,
    then a count. Exit 0 if every finding is verified, 3 if none is rejected but some are
    unverifiable, 1 if some evidence is rejected or FILE or a key cannot be read."""
    args = list(sys.argv[1:] if argv is None else argv)
    vkeys: list[Verifier] = []
    while "--vkey" in args:
        at = args.index("--vkey")
        if at + 1 >= len(args):
            break
        try:
            vkeys.append(parse_verifier_key(args[at + 1]))
        except PlcError as exc:
            print(f"check-evidence: --vkey is not a verifier key: {exc}", file=sys.stderr)
            return EXIT_REJECTED
        del args[at : at + 2]
    if len(args) != 1:
        print("usage: python -m auditor.evidence_check FINDINGS.jsonl [--vkey KEY]...")
        return EXIT_REJECTED
    try:
        with open(args[0], "rb") as handle:
            raws = handle.read().split(b"\n")
    except OSError as exc:
        print(f"check-evidence: cannot read {args[0]}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_REJECTED
    counts = {VERIFIED: 0, UNVERIFIABLE: 0, "rejected": 0}
    signed_notes = False
    parsed: list[tuple[int, Any]] = []
    for number, raw in enumerate(raws, 1):
        if not raw.strip():
            continue
        try:
            parsed.append((number, orjson.loads(raw)))
        except orjson.JSONDecodeError as exc:
            parsed.append((number, exc))
    index = FindingsIndex(f for _, f in parsed)
    for number, finding in parsed:
        try:
            if isinstance(finding, orjson.JSONDecodeError):
                raise finding
            text = verdict(finding, vkeys, index)
            counts[status_of(text)] += 1
        except (orjson.JSONDecodeError, EvidenceRejected) as exc:
            counts["rejected"] += 1
            why = "not JSON" if isinstance(exc, orjson.JSONDecodeError) else str(exc)
            text = f"REJECTED: {why}"
        shown = finding if isinstance(finding, dict) else {}
        signed_notes |= shown.get("class") in (*NOTE_CLASSES, "checkpoint-signature-invalid")
        where = f" seq={shown['seq']}" if shown.get("seq") is not None else ""
        evidence = shown.get("evidence")
        tolerance = evidence.get("tolerance_ms") if isinstance(evidence, dict) else None
        if shown.get("class") == "backdated-op" and type(tolerance) is int:
            # The claim holds under the finding's own tolerance, which may be smaller than the
            # reader's (a directory's seq may invert createdAt by a little).
            text += f" (tolerance {tolerance} ms)"
        print(f"{number}: {shown.get('class')}{where}: {text}")
    if signed_notes and not vkeys:
        print(f"check-evidence: warning: {_NO_KEY} (give the log's key)", file=sys.stderr)
    print(
        f"{counts[VERIFIED]} verified, {counts[UNVERIFIABLE]} unverifiable, "
        f"{counts['rejected']} rejected"
    )
    if counts["rejected"]:
        return EXIT_REJECTED
    return EXIT_UNVERIFIABLE if counts[UNVERIFIABLE] else EXIT_VERIFIED


if __name__ == "__main__":
    raise SystemExit(main())
