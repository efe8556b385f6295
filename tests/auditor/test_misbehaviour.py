"""The misbehaviour suite: the corpus our directory published, served honestly and then
tampered with in each way the auditor must catch — one test per finding class — each found
with evidence the standalone checker verifies on its own.

The fake directory (:mod:`tests.auditor.fakedir`) signs checkpoints with the corpus's log
key over whatever it serves, the way a directory that accepted bad ops would: the log is
consistent, but its content breaks the rules.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import orjson
import pytest

from auditor.errors import AuditFailed
from auditor.findings import INFO, MISBEHAVIOUR
from plc.keys import PrivateKey
from plc.signing import cid_of, create_did, plc_operation, sign_operation
from plc.timestamps import format_timestamp, parse_timestamp
from plc.tlog.checkpoint import Checkpoint, sign_checkpoint
from plc.tlog.note import Signer

from .conftest import (
    Audit,
    assert_evidence,
    assert_evidence_consistent,
    assert_unverifiable,
    classes,
    created_at,
    line_for,
    renumber,
    seq_of,
    serve,
    stored_findings,
)
from .corpus import Account, Corpus, _update
from .fakedir import FakeLog


def honest(corpus: Corpus) -> FakeLog:
    return FakeLog(list(corpus.lines), corpus.signer)


def later(line: bytes, delta: timedelta) -> str:
    return format_timestamp(parse_timestamp(created_at(line)) + delta)


def append(log: FakeLog, did: str, op: dict[str, Any], when: str) -> int:
    """Append a signed op as the next line (the directory "accepted" it); return its seq."""
    seq = seq_of(log.lines[-1]) + 1
    log.lines.append(line_for(did, op, seq, when))
    log.changed()
    return seq


def keyed(corpus: Corpus) -> dict[str, Any]:
    return {"verifiers": (corpus.signer.verifier,)}


def test_untampered_corpus_is_clean_and_matches_the_real_checkpoint(
    corpus: Corpus, sync: Audit
) -> None:
    log = honest(corpus)
    assert log.checkpoint() == corpus.checkpoint  # our server signed the same tree
    with serve(log) as url:
        assert sync(url, workers=2, spot_checks=12, **keyed(corpus)) == []


def test_invalid_signature(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    a = corpus.account(
        lambda a: len(a.ops) > 1 and "sig" in a.ops[-1] and a.ops[-1]["type"] == "plc_operation"
    )
    op = _update(a.ops[-1], PrivateKey.from_seed("intruder"), "stolen.test")
    seq = append(log, a.did, op, later(log.lines[-1], timedelta(seconds=1)))
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert [(f.cls, f.seq) for f in findings] == [("invalid-signature", seq)]
    assert_evidence(findings, "invalid-signature", corpus.signer)


def test_chained_to_nullified(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    a = corpus.account(lambda a: any(a.nullified))
    gone = a.ops[a.nullified.index(True)]
    op = _update(gone, a.keys[0], "zombie.test")
    seq = append(log, a.did, op, later(log.lines[-1], timedelta(seconds=1)))
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert ("chained-to-nullified", seq) in [(f.cls, f.seq) for f in findings]
    assert_evidence(findings, "chained-to-nullified", corpus.signer)


def test_chained_to_tombstone(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    a = corpus.account(lambda a: a.ops[-1]["type"] == "plc_tombstone")
    op = sign_operation(
        plc_operation(rotation_keys=[a.keys[0].did_key], prev=cid_of(a.ops[-1])), a.keys[0]
    )
    seq = append(log, a.did, op, later(log.lines[-1], timedelta(seconds=1)))
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert ("chained-to-tombstone", seq) in [(f.cls, f.seq) for f in findings]
    assert_evidence(findings, "chained-to-tombstone", corpus.signer)


def _head_signed_by(corpus: Corpus, index: int) -> Account:
    return corpus.account(
        lambda a: (
            len(a.ops) >= 2
            and a.signers[-1] == index
            and a.ops[-1]["type"] == "plc_operation"
            and not any(a.nullified)
        )
    )


def test_late_recovery(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    a = _head_signed_by(corpus, 1)
    op = _update(a.ops[-2], a.keys[0], "too-late.test")  # key 0 outranks key 1, but 73 h on
    seq = append(log, a.did, op, later(log.lines[-1], timedelta(hours=73)))
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert ("late-recovery", seq) in [(f.cls, f.seq) for f in findings]
    assert_evidence(findings, "late-recovery", corpus.signer)


def test_unauthorized_recovery(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    a = _head_signed_by(corpus, 0)
    op = _update(a.ops[-2], a.keys[1], "usurper.test")  # key 1 cannot override key 0
    seq = append(log, a.did, op, later(log.lines[-1], timedelta(seconds=5)))
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert ("unauthorized-recovery", seq) in [(f.cls, f.seq) for f in findings]
    assert "fork" not in classes(findings)  # the directory's own state shows no fork
    assert_evidence(findings, "unauthorized-recovery", corpus.signer)


def test_fork_two_non_nullified_children(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    a = _head_signed_by(corpus, 0)
    op = _update(a.ops[-2], a.keys[0], "twin.test")  # a second child of the same op
    when = later(log.lines[-1], timedelta(seconds=5))
    append(log, a.did, op, when)
    served = [
        {"did": a.did, "operation": o, "cid": cid_of(o), "nullified": n, "createdAt": "x"}
        for o, n in zip([*a.ops, op], [*a.nullified, False], strict=True)
    ]
    log.responses_override[f"/{a.did}/log/audit"] = (200, served)
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert {"fork", "unauthorized-recovery"} <= classes(findings)
    assert [f.did for f in findings if f.cls == "fork"] == [a.did]
    assert_evidence_consistent(findings, "fork", corpus.signer)  # an unsigned answer


def test_wrong_cid(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    k = 40
    value = orjson.loads(log.lines[k])
    other = orjson.loads(log.lines[k + 1])["cid"]
    log.lines[k] = log.lines[k].replace(
        f'"cid":"{value["cid"]}"'.encode(), f'"cid":"{other}"'.encode()
    )
    log.changed()
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert ("wrong-cid", k + 1) in [(f.cls, f.seq) for f in findings]
    assert_evidence(findings, "wrong-cid", corpus.signer)


def test_genesis_not_matching_the_did(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    _, genesis = create_did([PrivateKey.from_seed("squatter")], handle="squat.test")
    seq = append(log, "did:plc:" + "a" * 24, genesis, later(log.lines[-1], timedelta(seconds=1)))
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert [(f.cls, f.seq) for f in findings] == [("genesis-did-mismatch", seq)]
    assert_evidence(findings, "genesis-did-mismatch", corpus.signer)


def test_op_before_its_prev(corpus: Corpus, sync: Audit) -> None:
    a = corpus.account(lambda a: len(a.ops) >= 2)
    cids = [cid_of(o) for o in a.ops]
    positions = [i for i, x in enumerate(corpus.lines) if orjson.loads(x)["cid"] in cids]
    lines = list(corpus.lines)
    first, second = positions[0], positions[1]
    lines[first], lines[second] = lines[second], lines[first]
    log = FakeLog(renumber(lines), corpus.signer)
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert ("op-before-prev", first + 1) in [(f.cls, f.seq) for f in findings]
    assert_evidence_present = [f for f in findings if f.cls == "op-before-prev"]
    assert assert_evidence_present[0].evidence["lines"][-1] is not None
    assert_evidence_consistent(findings, "op-before-prev")


@pytest.mark.parametrize("kind", ["gap", "repeat", "identical-repeat", "regression"])
def test_seq_gap_repeat_and_regression(corpus: Corpus, sync: Audit, kind: str) -> None:
    lines = list(corpus.lines)
    k = 100
    if kind == "gap":
        del lines[k]
        expected = ("seq-gap", k + 2)
    elif kind == "repeat":
        value = orjson.loads(lines[k])
        lines[k] = lines[k].replace(f'"seq":{k + 1},'.encode(), f'"seq":{k},'.encode())
        expected = ("duplicate-seq", k)
        assert value["seq"] == k + 1
    elif kind == "identical-repeat":
        lines.insert(k, lines[k - 1])  # the same line twice, byte for byte
        expected = ("duplicate-seq", k)
    else:
        lines[k], lines[k + 1] = lines[k + 1], lines[k]
        expected = ("seq-regression", k + 1)
    log = FakeLog(lines, corpus.signer)
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert expected in [(f.cls, f.seq) for f in findings]
    assert_evidence_consistent(findings, expected[0])


def test_seq_gap_is_information_with_allow_seq_gaps(corpus: Corpus, verify: Audit) -> None:
    lines = list(corpus.lines)
    dids = [orjson.loads(x)["did"] for x in lines]
    k = next(i for i in range(50, len(lines)) if dids.count(dids[i]) == 1)
    del lines[k]  # an op no other op depends on
    findings = verify(lines, allow_seq_gaps=True)
    assert [(f.cls, f.severity) for f in findings] == [("seq-gap", INFO)]


def test_allow_seq_gaps_does_not_excuse_a_gap_in_a_log(corpus: Corpus, sync: Audit) -> None:
    lines = list(corpus.lines)
    dids = [orjson.loads(x)["did"] for x in lines]
    k = next(i for i in range(50, len(lines)) if dids.count(dids[i]) == 1)
    del lines[k]  # a directory that serves /tlog/ has no gaps, whatever the flag says
    with serve(FakeLog(lines, corpus.signer)) as url:
        findings = sync(url, allow_seq_gaps=True, **keyed(corpus))
    assert [(f.cls, f.severity, f.seq) for f in findings] == [("seq-gap", MISBEHAVIOUR, k + 2)]


@pytest.mark.parametrize("status", [404, 503])
def test_a_directory_cannot_switch_its_log_checks_off(
    corpus: Corpus, sync: Audit, status: int
) -> None:
    log = FakeLog(list(corpus.lines[:500]), corpus.signer)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []
        log.checkpoint_status = status  # /tlog/checkpoint stops answering
        log.lines.extend(corpus.lines[500:600])
        log.changed()
        with pytest.raises(AuditFailed, match="served /tlog/ in an earlier run"):
            sync(url, **keyed(corpus))


def _drop_a_leaf_op(lines: list[bytes], start: int) -> int:
    """Delete (in place) the first op at or after ``start`` that no other op depends on (a
    gap in seq, nothing else); return its index."""
    dids = [orjson.loads(x)["did"] for x in lines]
    k = next(i for i in range(start, len(lines)) if dids.count(dids[i]) == 1)
    del lines[k]
    return k


def test_second_read_after_a_seq_gap_names_the_right_seq(corpus: Corpus, verify: Audit) -> None:
    lines = list(corpus.lines[:300])
    _drop_a_leaf_op(lines, 20)
    assert [f.cls for f in verify(lines, allow_seq_gaps=True)] == ["seq-gap"]
    changed_seq = orjson.loads(lines[200])["seq"]
    assert changed_seq == 202  # leaf 200 has seq 202 after the gap
    lines[200] = lines[200].replace(b'"createdAt":"2026', b'"createdAt":"2025')
    again = verify(lines, resume=True, allow_seq_gaps=True)
    rewritten = [(f.evidence["kind"], f.seq) for f in again if f.cls == "export-rewritten"]
    assert rewritten == [("changed", changed_seq)]


def test_tail_recheck_of_a_directory_with_seq_gaps(corpus: Corpus, sync: Audit) -> None:
    lines = list(corpus.lines)
    _drop_a_leaf_op(lines, 100)
    log = FakeLog(lines, signer=None)
    with serve(log) as url:
        assert [f.cls for f in sync(url, allow_seq_gaps=True)] == ["seq-gap"]
        k = len(lines) - 10
        changed_seq = orjson.loads(lines[k])["seq"]
        log.lines[k] = lines[k].replace(b'"createdAt":"2026', b'"createdAt":"2025')
        log.changed()
        again = sync(url, allow_seq_gaps=True, recheck="tail")
    rewritten = [(f.evidence["kind"], f.seq) for f in again if f.cls == "export-rewritten"]
    assert rewritten == [("changed", changed_seq)]


def test_a_page_that_does_not_advance_is_recorded_then_fails_the_run(
    corpus: Corpus, sync: Audit, tmp_path: Any
) -> None:
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer)
    log.export_override[1000] = list(corpus.lines[990:1000])  # the same old lines forever
    with serve(log) as url:
        with pytest.raises(AuditFailed, match="did not advance"):
            sync(url, **keyed(corpus))
        found = stored_findings(tmp_path / "state.sqlite3")
        assert ("seq-regression", 991) in [(f.cls, f.seq) for f in found]
        size = _tree_size(tmp_path / "state.sqlite3")
        # The same old page in the next run is not replayed into the tree again.
        with pytest.raises(AuditFailed, match="the same page as before"):
            sync(url, **keyed(corpus))
    assert _tree_size(tmp_path / "state.sqlite3") == size
    assert len(stored_findings(tmp_path / "state.sqlite3")) == len(found)


def _tree_size(path: Any) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'tree_size'").fetchone()[0])


def test_duplicate_op_in_one_export(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    repeat = orjson.loads(log.lines[10])
    seq = seq_of(log.lines[-1]) + 1
    # Stamped when served again (with its old createdAt it would be backdated-op too).
    when = later(log.lines[-1], timedelta(seconds=1))
    log.lines.append(line_for(repeat["did"], repeat["operation"], seq, when))
    log.changed()
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert [(f.cls, f.seq) for f in findings] == [("duplicate-op", seq)]
    assert_evidence(findings, "duplicate-op", corpus.signer)


def test_checkpoint_root_not_matching_the_entries(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    log.tree_lines = list(log.lines)  # what the log committed to
    k = 777
    log.lines[k] = log.lines[k].replace(b'"createdAt":"2026', b'"createdAt":"2025')
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    mismatch = [f for f in findings if f.cls == "checkpoint-root-mismatch"]
    assert len(mismatch) == 1
    assert mismatch[0].evidence["leaf"]["leaf_index"] == k  # located by binary search
    assert_unverifiable(findings, "checkpoint-root-mismatch", corpus.signer)


def test_inconsistent_checkpoints_after_history_is_rewritten(corpus: Corpus, sync: Audit) -> None:
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []
        rewritten = list(corpus.lines)
        rewritten[500] = rewritten[500].replace(b'"createdAt":"2026', b'"createdAt":"2025')
        log.lines = rewritten
        log.changed()
        findings = sync(url, **keyed(corpus))
    assert {"inconsistent-checkpoints", "export-rewritten"} <= classes(findings)
    assert_evidence(findings, "inconsistent-checkpoints", corpus.signer)
    assert_unverifiable(findings, "export-rewritten", corpus.signer)


def test_same_size_checkpoints_with_different_roots(corpus: Corpus, sync: Audit) -> None:
    log = honest(corpus)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []
        bogus = Checkpoint(corpus.signer.name, len(corpus.lines), b"\x07" * 32)
        log.checkpoint_override = sign_checkpoint(bogus, corpus.signer)
        findings = sync(url, **keyed(corpus))
    assert {"inconsistent-checkpoints", "checkpoint-root-mismatch"} <= classes(findings)
    assert_evidence(findings, "inconsistent-checkpoints", corpus.signer)


def test_a_witness_key_given_too_does_not_vouch_for_the_logs_checkpoints(
    corpus: Corpus, sync: Audit
) -> None:
    """With the log's key and a witness's, a note of the log's origin signed by the witness
    alone is not the log's: checkpoint-signature-invalid, not an inconsistency blamed on an
    honest log (the witness's key holder could frame it)."""
    witness = Signer.generate("witness.example")
    keys = {"verifiers": (corpus.signer.verifier, witness.verifier)}
    log = honest(corpus)
    with serve(log) as url:
        assert sync(url, **keys) == []
        bogus = Checkpoint(corpus.signer.name, len(corpus.lines), b"\x07" * 32)
        log.checkpoint_override = sign_checkpoint(bogus, witness)
        findings = sync(url, **keys)
    assert classes(findings) == {"checkpoint-signature-invalid"}, classes(findings)


def test_checkpoint_not_signed_by_the_verifier_key(corpus: Corpus, sync: Audit) -> None:
    log = FakeLog(list(corpus.lines), Signer.generate(corpus.signer.name))
    with serve(log) as url:
        findings = sync(url, **keyed(corpus))
    assert classes(findings) == {"checkpoint-signature-invalid"}
    # A note the log did not sign: that the directory served it is the auditor's word.
    assert_evidence_consistent(findings, "checkpoint-signature-invalid", corpus.signer)


def test_a_verifier_key_of_another_log_is_a_usage_error(
    corpus: Corpus, sync: Audit, tmp_path: Any
) -> None:
    """A --vkey naming another origin is the user's mistake (exit 1, nothing stored), not
    the directory's misbehaviour; once checkpoints of the key's log were kept, a directory
    that serves another origin under that state is a finding."""
    other_log = Signer.generate("another.example/tlog")
    log = honest(corpus)
    with serve(log) as url:
        with pytest.raises(AuditFailed, match="--vkey is for the log another.example/tlog"):
            sync(url, verifiers=(other_log.verifier,))
        assert not (tmp_path / "state.sqlite3").exists()  # nothing was stored
        assert sync(url, **keyed(corpus)) == []
        renamed = Checkpoint(other_log.name, len(corpus.lines), b"\x07" * 32)
        log.checkpoint_override = sign_checkpoint(renamed, other_log)
        findings = sync(url, **keyed(corpus))
    assert classes(findings) == {"checkpoint-signature-invalid"}


@pytest.mark.parametrize("kind", ["changed", "missing", "duplicated", "reordered"])
def test_export_rewritten_between_two_reads(corpus: Corpus, sync: Audit, kind: str) -> None:
    log = honest(corpus)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []
        lines = list(corpus.lines)
        k = 300
        if kind == "changed":
            lines[k] = lines[k].replace(b'"createdAt":"2026', b'"createdAt":"2025')
        elif kind == "missing":
            del lines[k]
            lines = renumber(lines)
        elif kind == "duplicated":
            lines.insert(k, lines[k - 200])
            lines = renumber(lines)
        else:
            lines[k], lines[k + 1] = lines[k + 1], lines[k]
            lines = renumber(lines)
        log.lines = lines
        log.changed()
        findings = sync(url, **keyed(corpus))
    rewritten = [f for f in findings if f.cls == "export-rewritten"]
    assert kind in {f.evidence["kind"] for f in rewritten}, [f.evidence["kind"] for f in rewritten]
    assert len(rewritten) <= 3
    if kind == "changed":
        assert_unverifiable(findings, "export-rewritten", corpus.signer)
    else:  # what a whole second read lacks or holds elsewhere: the auditor's observation
        assert_evidence_consistent(findings, "export-rewritten", corpus.signer)


@pytest.mark.parametrize("path", ["doc", "data", "audit"])
def test_served_document_differs_from_the_replay(corpus: Corpus, sync: Audit, path: str) -> None:
    log = honest(corpus)
    for a in corpus.accounts:
        data = {"did": a.did, "alsoKnownAs": ["at://impostor.test"]}
        route = {"doc": f"/{a.did}", "data": f"/{a.did}/data", "audit": f"/{a.did}/log/audit"}
        log.responses_override[route[path]] = (200, [] if path == "audit" else data)
    with serve(log) as url:
        findings = sync(url, spot_checks=2, **keyed(corpus))
    assert classes(findings) == {"served-state-mismatch"}
    assert_evidence_consistent(findings, "served-state-mismatch", corpus.signer)


def test_announced_removal_excuses_the_op_and_later_ones(
    corpus: Corpus, sync: Audit, tmp_path: Any
) -> None:
    log = honest(corpus)
    a = _head_signed_by(corpus, 0)
    bad = _update(a.ops[-1], PrivateKey.from_seed("intruder"), "stolen.test")
    append(log, a.did, bad, later(log.lines[-1], timedelta(seconds=1)))
    follow = _update(bad, PrivateKey.from_seed("intruder"), "stolen2.test")
    append(log, a.did, follow, later(log.lines[-1], timedelta(seconds=2)))
    listed = tmp_path / "removed.json"
    listed.write_bytes(orjson.dumps([cid_of(bad)]))
    from auditor.removals import load_removed_cids

    with serve(log) as url:
        findings = sync(url, removed_cids=load_removed_cids([listed]), **keyed(corpus))
    assert [(f.cls, f.severity) for f in findings] == [("announced-removal", INFO)] * 2


def test_checkpoint_ahead_of_the_entries_is_checked_when_they_arrive(
    corpus: Corpus, sync: Audit, tmp_path: Any
) -> None:
    ahead = FakeLog(list(corpus.lines), corpus.signer).checkpoint()
    log = FakeLog(list(corpus.lines[:1500]), corpus.signer, checkpoint_override=ahead)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []  # never reported early
        from auditor import state

        conn = state.connect(tmp_path / "state.sqlite3", create=False)
        assert [r[0] for r in conn.execute("SELECT status FROM checkpoints")] == ["pending"]
        log.lines, log.checkpoint_override = list(corpus.lines), None
        log.changed()
        assert sync(url, **keyed(corpus)) == []
        assert [r[0] for r in conn.execute("SELECT status FROM checkpoints")] == ["matched"]


def test_offline_file_against_signed_checkpoints(
    corpus: Corpus, verify: Audit, tmp_path: Any
) -> None:
    keys = {"verifiers": (corpus.signer.verifier,), "checkpoint_notes": (corpus.checkpoint,)}
    assert verify(list(corpus.lines), **keys) == []
    lines = list(corpus.lines)
    lines[200] = lines[200].replace(b'"createdAt":"2026', b'"createdAt":"2025')
    findings = verify(lines, **keys)
    # A year back along seq is also backdated-op (against the line before it).
    assert classes(findings) == {"checkpoint-root-mismatch", "backdated-op"}
    assert [f.seq for f in findings if f.cls == "backdated-op"] == [seq_of(lines[200])]
    mismatch = [f for f in findings if f.cls == "checkpoint-root-mismatch"]
    assert mismatch[0].evidence["leaf"] is None  # offline: the whole file is the evidence
    assert_evidence_consistent(findings, "checkpoint-root-mismatch")  # signed note, roots differ


def test_checkpoints_kept_unverified_are_verified_once_a_key_is_given(
    corpus: Corpus, sync: Audit, tmp_path: Any
) -> None:
    from auditor import state

    with serve(honest(corpus)) as url:
        assert sync(url) == []
        conn = state.connect(tmp_path / "state.sqlite3", create=False)
        assert [r[0] for r in conn.execute("SELECT signature FROM checkpoints")] == ["unverified"]
        other = Signer.generate(corpus.signer.name)
        found = sync(url, verifiers=(other.verifier,))
        assert classes(found) == {"checkpoint-signature-invalid"}
        assert sync(url, **keyed(corpus)) == found  # nothing new; the real key verifies it
        assert [r[0] for r in conn.execute("SELECT signature FROM checkpoints")] == ["verified"]
