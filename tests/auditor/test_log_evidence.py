"""Evidence the auditor writes against a fake directory on 127.0.0.1: a consistency proof the
log refuses or serves wrongly is never a finding when the log is honest, a real
inconsistency is proven from the tiles or from the auditor's own entries, lines fetched
again for evidence are the bytes the auditor read (or left out), and the checker agrees
with the auditor on a line two JSON parsers read differently."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditor import state
from auditor.audit import AuditOptions, sync_directory
from auditor.evidence_check import VERIFIED, EvidenceRejected, check_finding
from auditor.findings import Finding
from auditor.sources import LineFetcher, SourceSpec
from plc.tlog.checkpoint import Checkpoint, parse_checkpoint_unsafe, sign_checkpoint
from plc.tlog.hashing import leaf_hash

from .conftest import Audit, assert_evidence, classes, serve, stored_findings
from .corpus import Corpus
from .fakedir import FakeLog


def keyed(corpus: Corpus) -> dict[str, Any]:
    return {"verifiers": (corpus.signer.verifier,)}


def _rewritten(corpus: Corpus, at: int = 500) -> list[bytes]:
    lines = list(corpus.lines)
    lines[at] = lines[at].replace(b'"createdAt":"2026', b'"createdAt":"2025')
    assert lines[at] != corpus.lines[at]
    return lines


def _statuses(conn_path: Path) -> list[str]:
    conn = sqlite3.connect(conn_path)
    try:
        return [str(r[0]) for r in conn.execute("SELECT status FROM checkpoints ORDER BY id")]
    finally:
        conn.close()


@pytest.mark.parametrize("proofs", ["short", 503, 404])
def test_a_bad_or_refused_proof_of_an_honest_log_is_no_finding(
    corpus: Corpus, sync: Audit, tmp_path: Path, proofs: str | int
) -> None:
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []
        log.lines = list(corpus.lines)  # honest, append-only growth
        log.consistency_override = proofs  # only the proof endpoint misbehaves
        log.changed()
        assert sync(url, **keyed(corpus)) == []
        assert sync(url, **keyed(corpus)) == []  # and nothing later either
    assert set(_statuses(tmp_path / "state.sqlite3")) == {"matched"}


def test_an_inconsistency_is_proven_from_the_tiles_when_the_proof_is_refused(
    corpus: Corpus, sync: Audit
) -> None:
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer, tiles=True)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []
        log.lines = _rewritten(corpus)
        log.consistency_override = 503
        log.changed()
        findings = sync(url, recheck="none", **keyed(corpus))
    assert_evidence(findings, "inconsistent-checkpoints", corpus.signer)
    found = [f for f in findings if f.cls == "inconsistent-checkpoints"]
    assert [f.evidence.get("proof_source") for f in found] == ["tiles"]


def test_an_inconsistency_is_proven_from_the_entries(corpus: Corpus, sync: Audit) -> None:
    bogus = Checkpoint(corpus.signer.name, 1000, b"\x07" * 32)
    log = FakeLog(
        list(corpus.lines[:1000]),
        corpus.signer,
        checkpoint_override=sign_checkpoint(bogus, corpus.signer),
        consistency_override=503,  # and no tiles: only the entries can settle it
    )
    with serve(log) as url:
        assert classes(sync(url, **keyed(corpus))) == {"checkpoint-root-mismatch"}
        log.lines, log.checkpoint_override = list(corpus.lines), None
        log.changed()
        findings = sync(url, **keyed(corpus))
    assert_evidence(findings, "inconsistent-checkpoints", corpus.signer)
    found = [f for f in findings if f.cls == "inconsistent-checkpoints"]
    assert [f.evidence.get("proof_source") for f in found] == ["entries"]


def test_root_mismatch_evidence_survives_a_rewritten_history(corpus: Corpus, sync: Audit) -> None:
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []
        log.lines = _rewritten(corpus)  # re-signed: the new checkpoint commits to it
        log.changed()
        findings = sync(url, recheck="none", **keyed(corpus))
    assert {"inconsistent-checkpoints", "checkpoint-root-mismatch"} <= classes(findings)
    for mismatch in (f for f in findings if f.cls == "checkpoint-root-mismatch"):
        leaf = mismatch.evidence["leaf"]
        assert leaf is not None and leaf["leaf_index"] == 500
        try:
            check_finding(orjson.loads(mismatch.dumps()), [corpus.signer.verifier])
        except EvidenceRejected as exc:
            pytest.fail(f"the auditor's own evidence is rejected: {exc}")
        # The line read there is no longer served: left out, never the rewritten one.
        assert leaf["line"] is None
    assert_evidence(findings, "inconsistent-checkpoints", corpus.signer)
    found = [f for f in findings if f.cls == "inconsistent-checkpoints"]
    assert [f.evidence.get("proof_source") for f in found] == ["directory"]


def _sizes(finding: Finding) -> tuple[int, int]:
    """The tree sizes of an ``inconsistent-checkpoints`` finding's two notes."""
    ev = finding.evidence
    return (
        parse_checkpoint_unsafe(ev["smaller"]).tree_size,
        parse_checkpoint_unsafe(ev["larger"]).tree_size,
    )


def test_a_smaller_checkpoint_in_between_does_not_hide_an_inconsistency(
    corpus: Corpus, sync: Audit
) -> None:
    """Defect: A (1000, matched) was kept; the directory rewrote leaf 500, then served B (400,
    a true prefix of both trees) and C (all, the rewritten tree). C was checked against B
    only (consistent), so no finding showed that A and C, both signed, cannot both be
    honest: only a ``checkpoint-root-mismatch`` that check-evidence cannot verify."""
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []
        rewritten = _rewritten(corpus)
        log.lines = rewritten
        log.checkpoint_queue = [FakeLog(rewritten[:400], corpus.signer).checkpoint()]
        log.changed()
        findings = sync(url, recheck="none", **keyed(corpus))
    assert_evidence(findings, "inconsistent-checkpoints", corpus.signer)
    found = [f for f in findings if f.cls == "inconsistent-checkpoints"]
    assert [_sizes(f) for f in found] == [(1000, len(corpus.lines))]
    keys = [corpus.signer.verifier]
    assert check_finding(orjson.loads(found[0].dumps()), keys) == VERIFIED


def test_a_mismatch_is_paired_with_the_nearest_smaller_checkpoint(
    corpus: Corpus, sync: Audit
) -> None:
    """Defect: a checkpoint the entries contradict was paired only with a larger checkpoint
    they give. When the proof against the smaller one kept was refused as it was first seen
    (a replica behind), nothing later retried it: the rewrite of leaf 500 under A (1000,
    matched) by C (all) went without an ``inconsistent-checkpoints`` finding."""
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []
        log.lines = _rewritten(corpus)
        log.consistency_refusals = 1  # the first proof asked for, A -> C, is refused
        log.changed()
        findings = sync(url, recheck="none", **keyed(corpus))
    assert log.consistency_refusals == 0
    assert_evidence(findings, "inconsistent-checkpoints", corpus.signer)
    found = [f for f in findings if f.cls == "inconsistent-checkpoints"]
    assert [_sizes(f) for f in found] == [(1000, len(corpus.lines))]
    assert [f.evidence.get("proof_source") for f in found] == ["directory"]


def test_lines_fetched_again_are_the_lines_read(
    corpus: Corpus, sync: Audit, tmp_path: Path
) -> None:
    from auditor.treestore import check_line, verified_line

    log = FakeLog(list(corpus.lines[:1000]), corpus.signer)
    with serve(log) as url:
        assert sync(url, **keyed(corpus)) == []
        conn = state.connect(tmp_path / "state.sqlite3", create=False)
        fetcher = LineFetcher(SourceSpec.for_url(url))
        try:
            assert verified_line(conn, fetcher, 7, None) == corpus.lines[6]
            other = corpus.lines[6].replace(b'"createdAt":"2026', b'"createdAt":"2025')
            log.refetch[7] = other  # the same op, other bytes
            assert check_line(conn, 7, other) is False
            assert verified_line(conn, fetcher, 7, None) is None
            log.refetch[7] = None
            assert verified_line(conn, fetcher, 7, None) is None
            assert check_line(conn, 1001, corpus.lines[1000]) is None  # not read yet
        finally:
            fetcher.close()
            conn.close()


def test_spot_check_evidence_uses_the_lines_read(corpus: Corpus, tmp_path: Path) -> None:
    log = FakeLog(list(corpus.lines), corpus.signer)
    for a in corpus.accounts:
        log.responses_override[f"/{a.did}"] = (200, {"id": a.did, "alsoKnownAs": []})
    early = b'"createdAt":"2001-01-01T00:00:00.000Z"'
    for line in corpus.lines:
        value = orjson.loads(line)
        old = f'"createdAt":"{value["createdAt"]}"'.encode()
        log.refetch[value["seq"]] = line.replace(old, early)  # same ops, other bytes
    options = AuditOptions(workers=0, progress=False, spot_checks=20, seed=1, **keyed(corpus))
    with serve(log) as url:
        outcome = sync_directory(url, tmp_path / "state.sqlite3", options)
    findings = stored_findings(tmp_path / "state.sqlite3")
    # A directory that answers the one-line re-fetch with other bytes does not switch the
    # spot checks off unseen.
    assert any("DIDs not spot-checked: a line of theirs" in note for note in outcome.notes)
    served = [f for f in findings if f.cls == "served-state-mismatch"]
    read = set(corpus.lines)
    for finding in served:
        assert all(line.encode() in read for line in finding.evidence["lines"])
        try:
            check_finding(orjson.loads(finding.dumps()), [corpus.signer.verifier])
        except EvidenceRejected as exc:
            pytest.fail(f"spot-check evidence rejected: {exc}")


def test_a_line_two_parsers_read_differently_is_verified_as_malformed(
    corpus: Corpus, verify: Audit
) -> None:
    lines = list(corpus.lines[:300])
    lines[100] = lines[100][:-1] + b',"seq":999999}'  # a repeated key: 101 first, 999999 last
    findings = verify(lines)
    malformed = [f for f in findings if f.cls == "malformed-entry"]
    assert [f.seq for f in malformed] == [101]
    assert "two JSON parsers" in malformed[0].message
    assert check_finding(orjson.loads(malformed[0].dumps())) == VERIFIED
    assert leaf_hash(lines[100]) != leaf_hash(corpus.lines[100])


def test_rule_evidence_uses_the_lines_read(corpus: Corpus, sync: Audit) -> None:
    from datetime import timedelta

    from plc.keys import PrivateKey
    from plc.timestamps import format_timestamp, parse_timestamp

    from .conftest import created_at, line_for, seq_of
    from .corpus import _update

    log = FakeLog(list(corpus.lines), corpus.signer)
    a = corpus.account(lambda a: len(a.ops) > 1 and a.ops[-1]["type"] == "plc_operation")
    op = _update(a.ops[-1], PrivateKey.from_seed("intruder"), "stolen.test")
    when = format_timestamp(parse_timestamp(created_at(log.lines[-1])) + timedelta(seconds=1))
    log.lines.append(line_for(a.did, op, seq_of(log.lines[-1]) + 1, when))
    log.changed()
    early = b'"createdAt":"2001-01-01T00:00:00.000Z"'
    for line in corpus.lines:  # every line fetched again: the same op, other bytes
        value = orjson.loads(line)
        old = f'"createdAt":"{value["createdAt"]}"'.encode()
        log.refetch[value["seq"]] = line.replace(old, early)
    with serve(log) as url:
        findings = sync(url, spot_checks=0, **keyed(corpus))
    bad = [f for f in findings if f.cls == "invalid-signature"]
    assert len(bad) == 1
    read = {x.decode() for x in log.lines}
    kept = [x for x in bad[0].evidence["lines"] if x is not None]
    assert kept and all(x in read for x in kept)  # at least the op's own line, as read
    check_finding(orjson.loads(bad[0].dumps()), [corpus.signer.verifier])  # not rejected
