"""The standalone evidence checker on claims built by hand: forged accusations against an
honest log are never ``verified`` (a consistency proof that does not verify proves nothing;
what a whole export lacks or holds elsewhere is the auditor's observation), a real
inconsistency is, and ``plc-audit check-evidence`` says which with its exit code (0 all
verified, 3 some unverifiable, 1 some rejected or unreadable input)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditor import evidence_check, evidence_ops, lines
from auditor.evidence_check import UNVERIFIABLE, VERIFIED, EvidenceRejected, check_finding
from plc.signing import cid_of
from plc.tlog.checkpoint import Checkpoint, sign_checkpoint
from plc.tlog.encoding import encode_b64
from plc.tlog.hashing import leaf_hash
from plc.tlog.memory import MemoryHashStore
from plc.tlog.note import Signer
from plc.tlog.proof import consistency_proof, inclusion_proof

from ..helpers import new_did, update
from .conftest import Audit, assert_evidence_consistent, classes, line_for
from .corpus import Corpus
from .test_cli import REPO, plc_audit


def _tree(lines_: list[bytes]) -> MemoryHashStore:
    tree = MemoryHashStore()
    tree.append([leaf_hash(x) for x in lines_])
    return tree


def _note(corpus: Corpus, tree: MemoryHashStore, size: int) -> str:
    return sign_checkpoint(
        Checkpoint(corpus.signer.name, size, tree.root_hash(size)), corpus.signer
    )


def _b64(hashes: list[bytes]) -> list[str]:
    return [encode_b64(h) for h in hashes]


def _finding(cls: str, evidence: dict[str, Any], **fields: Any) -> dict[str, Any]:
    base = {"class": cls, "severity": "misbehaviour", "seq": None, "did": None, "cid": None}
    return {**base, "message": "by hand", "evidence": evidence, **fields}


def _inconsistent(small: str, large: str, proof: list[bytes], **extra: Any) -> dict[str, Any]:
    evidence = {"smaller": small, "larger": large, "consistency_proof": _b64(proof), **extra}
    return _finding("inconsistent-checkpoints", evidence)


def _rewritten(corpus: Corpus, kind: str, served: bytes | None) -> dict[str, Any]:
    tree = _tree(corpus.lines)
    size = len(corpus.lines)
    evidence = {
        "kind": kind,
        "leaf_index": 10,
        "stored_leaf_hash": encode_b64(leaf_hash(corpus.lines[10])),
        "served_line": None if served is None else served.decode(),
        "checkpoint": _note(corpus, tree, size),
        "inclusion_proof": _b64(inclusion_proof(10, size, tree)),
    }
    return _finding("export-rewritten", evidence, seq=11)


def _status(finding: dict[str, Any], corpus: Corpus, keyed: bool = True) -> str:
    try:
        return check_finding(finding, [corpus.signer.verifier] if keyed else [])
    except EvidenceRejected:
        return "rejected"


def _rewritten_log(corpus: Corpus) -> MemoryHashStore:
    """The corpus with line 500 changed: a history inconsistent with the corpus's own."""
    changed = list(corpus.lines)
    changed[500] = changed[500].replace(b'"createdAt":"2026', b'"createdAt":"2025')
    assert changed[500] != corpus.lines[500]
    return _tree(changed)


def test_forged_accusations_against_an_honest_log_are_not_verified(corpus: Corpus) -> None:
    tree = _tree(corpus.lines)
    small, large = _note(corpus, tree, 1000), _note(corpus, tree, 1500)
    genuine = consistency_proof(1000, 1500, tree)
    # A truncated proof does not verify: it proves nothing (was "verified").
    assert _status(_inconsistent(small, large, genuine[:-1]), corpus) == "rejected"
    assert _status(_inconsistent(small, large, genuine), corpus) == "rejected"
    # The same truncated proof with the smaller root claimed as the root it starts from.
    forged = _inconsistent(small, large, genuine[:-1], root_at_smaller_size=encode_b64(b"\1" * 32))
    assert _status(forged, corpus) == "rejected"
    # "missing": only the genuine leaf and its inclusion proof (was "verified").
    assert _status(_rewritten(corpus, "missing", None), corpus) == UNVERIFIABLE
    # "reordered": the line of another seq said to be served here (was "verified").
    assert _status(_rewritten(corpus, "reordered", corpus.lines[11]), corpus) == UNVERIFIABLE
    # "changed" with the line of another seq: rejected, as before.
    assert _status(_rewritten(corpus, "changed", corpus.lines[11]), corpus) == "rejected"
    # "changed" with a line of that seq the log never served, made up from the signed leaf
    # and the log's public proof: the line is unsigned, so not verified (was "verified").
    made_up = corpus.lines[10].replace(b'"createdAt":"', b'"createdAt":"1', 1)
    assert made_up != corpus.lines[10]
    assert _status(_rewritten(corpus, "changed", made_up), corpus) == UNVERIFIABLE
    tree, size = _tree(corpus.lines), len(corpus.lines)
    mismatch = {
        "checkpoint": _note(corpus, tree, size),
        "computed_root": encode_b64(b"\2" * 32),
        "leaf": {
            "leaf_index": 10,
            "directory_leaf_hash": encode_b64(leaf_hash(corpus.lines[10])),
            "inclusion_proof": _b64(inclusion_proof(10, size, tree)),
            "line": made_up.decode(),
        },
    }
    root_finding = _finding("checkpoint-root-mismatch", mismatch, seq=11)
    assert _status(root_finding, corpus) == UNVERIFIABLE


def test_a_real_inconsistency_is_verified_only_with_a_proof_that_verifies(
    corpus: Corpus,
) -> None:
    honest, other = _tree(corpus.lines), _rewritten_log(corpus)
    size = len(corpus.lines)
    for old_size in (1000, 1024):  # 1024: the proof does not carry the old root
        small, large = _note(corpus, honest, old_size), _note(corpus, other, size)
        proof = consistency_proof(old_size, size, other)
        root = encode_b64(other.root_hash(old_size))
        with_root = _inconsistent(small, large, proof, root_at_smaller_size=root)
        assert _status(with_root, corpus) == VERIFIED
        # Without the log's key the signatures are not checked: not verified.
        assert _status(with_root, corpus, keyed=False) == UNVERIFIABLE
        assert "no --vkey" in evidence_check.verdict(with_root, [])
        # The root the proof implies (evidence of earlier versions): only when it carries it.
        bare = _inconsistent(small, large, proof)
        assert _status(bare, corpus) == (VERIFIED if old_size == 1000 else "rejected")
        # A root at the smaller size the proof does not lead from.
        wrong = _inconsistent(
            small, large, proof, root_at_smaller_size=encode_b64(honest.root_hash(old_size - 1))
        )
        assert _status(wrong, corpus) == "rejected"
    # Same size, different roots: two signed notes are the whole proof.
    same = _inconsistent(_note(corpus, honest, size), _note(corpus, other, size), [])
    assert _status(same, corpus) == VERIFIED


def test_a_pair_of_checkpoints_is_signed_by_one_key_named_as_their_origin(
    corpus: Corpus,
) -> None:
    """With several ``--vkey`` keys (a witness's, another log's), a checkpoint counts only
    when the key named after its origin signed it, and the two of a pair need the same key:
    the holder of one key must not frame another log."""
    honest = _tree(corpus.lines)
    size = len(corpus.lines)
    genuine = _note(corpus, honest, size)
    witness = Signer("witness.example", bytes(range(32)))
    impostor = Signer(corpus.signer.name, bytes(range(1, 33)))  # the log's name, not its key
    keys = [corpus.signer.verifier, witness.verifier, impostor.verifier]
    for signer in (witness, impostor):
        forged = sign_checkpoint(Checkpoint(corpus.signer.name, size, b"\5" * 32), signer)
        pair = _inconsistent(genuine, forged, [])
        try:
            status = check_finding(pair, keys)
        except EvidenceRejected:
            status = "rejected"
        assert status == "rejected", signer.name  # was "verified" with the witness key
    # The log's own key alone still verifies a real same-size pair.
    other = sign_checkpoint(Checkpoint(corpus.signer.name, size, b"\5" * 32), corpus.signer)
    assert check_finding(_inconsistent(genuine, other, []), keys) == VERIFIED


def test_evidence_nested_too_deeply_to_compare_rejects_its_finding_not_the_file(
    corpus: Corpus,
) -> None:
    """Two findings of one op whose evidence nests near orjson's limit made the index's
    comparison raise RecursionError: the whole file went unchecked."""

    def deep(bottom: int) -> Any:
        value: Any = [bottom]
        for _ in range(990):  # under orjson's limit of 1024 levels: such a file parses
            value = [value]
        return value

    did = "did:plc:" + "a" * 24
    bad = [
        _finding("invalid-signature", {"lines": deep(n)}, seq=5, did=did, cid="x") for n in range(2)
    ]
    honest = _inconsistent(
        _note(corpus, _tree(corpus.lines), len(corpus.lines)),
        _note(corpus, _rewritten_log(corpus), len(corpus.lines)),
        [],
    )
    findings = [honest, *bad]
    index = evidence_check.FindingsIndex(findings)  # raised RecursionError here
    assert check_finding(honest, [corpus.signer.verifier], index) == VERIFIED
    for finding in bad:
        with pytest.raises(EvidenceRejected):
            check_finding(finding, [corpus.signer.verifier], index)


def test_unsigned_answers_and_bad_signatures_are_the_auditors_observation(
    corpus: Corpus,
) -> None:
    impostor = Signer.generate(corpus.signer.name)
    other = sign_checkpoint(Checkpoint(corpus.signer.name, 5, b"\2" * 32), impostor)
    bad = _finding("checkpoint-signature-invalid", {"checkpoint": other, "vkey": []})
    assert _status(bad, corpus) == UNVERIFIABLE  # anyone can write a note that fails
    signed = _finding("checkpoint-signature-invalid", {"checkpoint": corpus.checkpoint})
    assert _status(signed, corpus) == "rejected"


def test_announced_removal_needs_its_line(corpus: Corpus) -> None:
    line = corpus.lines[3]
    value = orjson.loads(line)
    fields = {"did": value["did"], "cid": value["cid"], "severity": "info"}
    empty = _finding("announced-removal", {}, **fields)
    assert _status(empty, corpus) == "rejected"  # was "verified"
    listed = _finding("announced-removal", {"line": line.decode(), "listed_cid": value["cid"]})
    assert _status({**listed, **fields}, corpus) == VERIFIED
    other = orjson.loads(corpus.lines[4])["cid"]
    wrong = _finding("announced-removal", {"line": line.decode(), "listed_cid": other}, **fields)
    assert _status(wrong, corpus) == "rejected"
    earlier = _finding("announced-removal", {"line": line.decode(), "listed_cid": None}, **fields)
    assert _status(earlier, corpus) == UNVERIFIABLE
    assert _status(_finding("malformed-entry", {}), corpus) == "rejected"  # was "verified"


def test_an_honest_dids_lines_out_of_order_or_repeated_prove_no_rule_broken(
    corpus: Corpus,
) -> None:
    # An honest DID: genesis, an update by key 1, then key 0 (more authority) nullifies it.
    did, genesis, keys = new_did("honest-reordered")
    low = update(genesis, keys[1], also_known_as=["at://low.example"])
    recovery = update(genesis, keys[0], also_known_as=["at://recovery.example"])
    honest = [
        line_for(did, op, seq, f"2025-01-01T0{seq}:00:00.000Z").decode()
        for seq, op in ((1, genesis), (2, low), (3, recovery))
    ]

    def accuse(evidence_lines: list[str], seq: int, op: dict[str, Any]) -> dict[str, Any]:
        evidence = {"lines": evidence_lines, "refused": []}
        return _finding("unauthorized-recovery", evidence, seq=seq, did=did, cid=cid_of(op))

    # Lines 1, 3, 2: replayed in that order the update looks like an unauthorized recovery
    # of the recovery (was "verified").
    reordered = accuse([honest[0], honest[2], honest[1]], 2, low)
    assert _status(reordered, corpus) == "rejected"
    with pytest.raises(EvidenceRejected, match="not in log order"):
        evidence_check.verdict(reordered)
    # [genesis, U, U]: an op replayed after itself (was "verified").
    repeated = accuse([honest[0], honest[2], honest[2]], 3, recovery)
    with pytest.raises(EvidenceRejected, match="repeats line 1"):
        evidence_check.verdict(repeated)
    # In order, but the accused line is not at the finding's seq.
    elsewhere = accuse(honest, 2, recovery)
    with pytest.raises(EvidenceRejected, match="not the finding's seq"):
        evidence_check.verdict(elsewhere)
    # The honest lines in order accuse no one.
    with pytest.raises(EvidenceRejected, match="no rule is broken"):
        evidence_check.verdict(accuse(honest, 3, recovery))


def test_the_checker_reads_a_line_head_as_the_auditor_does() -> None:
    # The duplicate-key check of malformed-entry depends on the same canonical prefix.
    assert evidence_ops._CANONICAL_HEAD.pattern == lines._CANONICAL_HEAD.pattern


def _write(path: Path, findings: list[dict[str, Any]], extra: bytes = b"") -> Path:
    path.write_bytes(b"".join(orjson.dumps(f) + b"\n" for f in findings) + extra)
    return path


def test_check_evidence_exit_codes(corpus: Corpus, tmp_path: Path) -> None:
    honest, other = _tree(corpus.lines), _rewritten_log(corpus)
    size = len(corpus.lines)
    real = _inconsistent(
        _note(corpus, honest, 1000),
        _note(corpus, other, size),
        consistency_proof(1000, size, other),
        root_at_smaller_size=encode_b64(other.root_hash(1000)),
    )
    vkey = ("--vkey", corpus.signer.verifier.key_text)
    path = _write(tmp_path / "real.jsonl", [real])
    done = plc_audit("check-evidence", str(path), *vkey)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1: inconsistent-checkpoints: verified" in done.stdout
    # Without the key: unverifiable (exit 3) and a warning.
    done = plc_audit("check-evidence", str(path))
    assert done.returncode == 3 and "unverifiable: no --vkey" in done.stdout
    assert "warning" in done.stderr
    # A claim resting on the auditor's word: exit 3, "unverifiable: <why>".
    path = _write(tmp_path / "mixed.jsonl", [real, _rewritten(corpus, "missing", None)])
    done = plc_audit("check-evidence", str(path), *vkey)
    assert done.returncode == 3
    assert "2: export-rewritten seq=11: unverifiable: " in done.stdout
    assert "1 verified, 1 unverifiable, 0 rejected" in done.stdout
    # A proof that does not verify: rejected, exit 1.
    tree = _tree(corpus.lines)
    truncated = _inconsistent(
        _note(corpus, tree, 1000),
        _note(corpus, tree, 1500),
        consistency_proof(1000, 1500, tree)[:-1],
    )
    path = _write(tmp_path / "forged.jsonl", [real, truncated])
    done = plc_audit("check-evidence", str(path), *vkey)
    assert done.returncode == 1 and "2: inconsistent-checkpoints: REJECTED" in done.stdout


@pytest.mark.parametrize(
    "content", [b"not json at all\n", b"[1, 2]\n", b'{"class": 7}\n', b'{"evidence": []}\n']
)
def test_check_evidence_rejects_junk_without_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_bytes(content)
    done = plc_audit("check-evidence", str(path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    standalone = subprocess.run(
        [sys.executable, "-m", "auditor.evidence_check", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert standalone.returncode == 1 and "REJECTED" in standalone.stdout
    assert "Traceback" not in standalone.stderr


def test_check_evidence_unreadable_file_or_key_exits_1(tmp_path: Path) -> None:
    done = plc_audit("check-evidence", str(tmp_path / "missing.jsonl"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    path = _write(tmp_path / "empty.jsonl", [])
    done = plc_audit("check-evidence", str(path), "--vkey", "bogus")
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_the_checker_agrees_that_a_seq_above_2_63_is_malformed(corpus: Corpus) -> None:
    # The auditor reports such a line as malformed-entry (auditor.sequence.seq_out_of_range).
    line = corpus.lines[0].replace(b'"seq":1,', b'"seq":9223372036854775808,')
    assert line != corpus.lines[0]
    finding = _finding("malformed-entry", {"line": line.decode(), "error": "seq"})
    assert check_finding(finding) == VERIFIED
    from auditor.sequence import MAX_SEQ  # what the auditor reports as malformed

    assert evidence_ops.MAX_SEQ == MAX_SEQ


def test_a_rule_broken_beside_a_duplicate_seq_is_unverifiable_not_rejected(
    verify: Audit,
) -> None:
    # A directory that served seq 2 twice: the update and a stranger's op of the same DID.
    # The stranger's op is an invalid signature; its evidence holds both ops at seq 2, so
    # the order between them is the auditor's word (it was "rejected" as out of log order).
    did, genesis, keys = new_did("tied-seq")
    valid = update(genesis, keys[0], also_known_as=["at://valid.example"])
    stranger = update(genesis, new_did("stranger")[2][0], also_known_as=["at://x.example"])
    export = [
        line_for(did, genesis, 1, "2025-01-01T01:00:00.000Z"),
        line_for(did, valid, 2, "2025-01-01T02:00:00.000Z"),
        line_for(did, stranger, 2, "2025-01-01T03:00:00.000Z"),
    ]
    findings = verify(export, allow_seq_gaps=True)
    assert "duplicate-seq" in classes(findings)
    assert_evidence_consistent(findings, "invalid-signature")
