"""A directory whose export lost a row its log still has (``DELETE FROM operations WHERE
seq = K`` behind the server's back): the log's leaf ``K - 1`` stays, ``/export`` skips seq
``K``. The auditor must say so with evidence ``check-evidence`` accepts (never a line of
another ``seq`` offered as that leaf), count a shifted re-read as the one op it lost, and
settle a checkpoint the export went past instead of waiting for its entries forever."""

from __future__ import annotations

from pathlib import Path

import orjson

from auditor import state
from auditor.audit import AuditOptions, sync_directory
from auditor.evidence_check import UNVERIFIABLE, check_finding
from auditor.findings import Finding

from .conftest import line_for, seq_of, serve, stored_findings
from .corpus import Corpus, _update
from .fakedir import FakeLog
from .test_misbehaviour import _head_signed_by, later

DELETED = 1500
"""The seq of the deleted row: inside a page of ``/export`` (pages end at 1000, 2001, ...),
so no page of a fresh read ends at the checkpoint's size with the row missing."""


def _with_new_op(corpus: Corpus) -> list[bytes]:
    """The corpus lines and one more valid op (seq ``len + 1``): what the log holds after
    the directory accepted a new op."""
    from datetime import timedelta

    a = _head_signed_by(corpus, 0)
    op = _update(a.ops[-1], a.keys[0], "after-the-delete.test")
    seq = len(corpus.lines) + 1
    return [*corpus.lines, line_for(a.did, op, seq, later(corpus.lines[-1], timedelta(seconds=1)))]


def _without(lines: list[bytes], seq: int) -> list[bytes]:
    return [x for x in lines if seq_of(x) != seq]


def _sync(url: str, path: Path, corpus: Corpus) -> tuple[list[str], list[Finding]]:
    options = AuditOptions(
        workers=0, progress=False, spot_checks=-1, verifiers=(corpus.signer.verifier,)
    )
    outcome = sync_directory(url, path, options)
    return outcome.notes, stored_findings(path)


def _verdicts(findings: list[Finding], corpus: Corpus, cls: str) -> set[str]:
    """The checker's verdicts on the findings of ``cls`` (raises if one is rejected)."""
    keys = [corpus.signer.verifier]
    return {check_finding(orjson.loads(f.dumps()), keys) for f in findings if f.cls == cls}


def test_root_mismatch_at_a_skipped_seq_names_it_instead_of_another_line(
    corpus: Corpus, tmp_path: Path
) -> None:
    """Defect: leaf K-1 was paired with the line of seq K+1 (REJECTED by check-evidence)."""
    tree = _with_new_op(corpus)
    lagging = FakeLog(list(corpus.lines), corpus.signer).checkpoint()  # size N, seq K in it
    log = FakeLog(_without(tree, DELETED), corpus.signer, tree_lines=tree)
    log.checkpoint_override = lagging  # reached by the N entries the export serves
    with serve(log) as url:
        _, findings = _sync(url, tmp_path / "s.sqlite3", corpus)
    [mismatch] = [f for f in findings if f.cls == "checkpoint-root-mismatch"]
    leaf = mismatch.evidence["leaf"]
    assert leaf["leaf_index"] == DELETED - 1 and leaf["line"] is None
    assert (leaf["unserved_seq"], leaf["read_seq"]) == (DELETED, DELETED + 1)
    assert _verdicts(findings, corpus, "checkpoint-root-mismatch") == {UNVERIFIABLE}


def test_a_deleted_row_is_one_missing_op_on_the_second_read(corpus: Corpus, tmp_path: Path) -> None:
    """Defect: the last position held a newer op moved in by the shift, reported as
    ``changed`` (REJECTED: another seq), and every shifted position counted as differing."""
    log = FakeLog(list(corpus.lines), corpus.signer)
    path = tmp_path / "s.sqlite3"
    with serve(log) as url:
        assert _sync(url, path, corpus)[1] == []
        tree = _with_new_op(corpus)
        log.lines, log.tree_lines = _without(tree, DELETED), tree
        log.changed()
        notes, findings = _sync(url, path, corpus)
    rewritten = [(f.evidence["kind"], f.seq) for f in findings if f.cls == "export-rewritten"]
    assert rewritten == [("missing", DELETED)]
    assert _verdicts(findings, corpus, "export-rewritten") == {UNVERIFIABLE}
    size = len(corpus.lines)
    moved = size - DELETED
    assert f"second read of the export: 1 of {size} leaves differ (1 reported); {moved} more" in (
        " ".join(notes)
    )


def test_a_checkpoint_the_export_went_past_is_settled_not_pending_forever(
    corpus: Corpus, tmp_path: Path
) -> None:
    """Defect: an idle directory missing a row left its checkpoint "pending" on every run."""
    log = FakeLog(_without(list(corpus.lines), DELETED), corpus.signer)
    log.tree_lines = list(corpus.lines)
    path = tmp_path / "s.sqlite3"
    with serve(log) as url:
        notes, findings = _sync(url, path, corpus)
        again, second = _sync(url, path, corpus)
    [withheld] = [f for f in findings if f.cls == "checkpoint-entries-withheld"]
    assert withheld.evidence["unserved_seq"] == DELETED
    assert withheld.evidence["leaf"]["leaf_index"] == DELETED - 1
    assert _verdicts(findings, corpus, "checkpoint-entries-withheld") == {UNVERIFIABLE}
    assert not [n for n in notes + again if "ahead of" in n]
    assert second == findings  # settled once
    conn = state.connect(path, create=False)
    try:
        assert [r[0] for r in conn.execute("SELECT status FROM checkpoints")] == ["mismatch"]
    finally:
        conn.close()


def test_first_unread_seq(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.sqlite3")
    try:
        assert state.first_unread_seq(conn, 0) == 1
        assert state.first_unread_seq(conn, 5) == 6
        state.add_leaf_seqs(conn, [(3, 5)])  # seqs 1 2 3 5 6 ...: 4 skipped
        assert state.first_unread_seq(conn, 3) == 4
        assert state.first_unread_seq(conn, 6) == 4
        state.add_leaf_seqs(conn, [(0, 2), (1, 1)])  # seqs 2 1 2 5 ...: 3 skipped
        assert state.first_unread_seq(conn, 6) == 3
    finally:
        conn.close()


def test_an_op_replaced_behind_a_deleted_row_is_changed_at_its_own_seq(
    corpus: Corpus, tmp_path: Path
) -> None:
    """After a gap every line sits one position early: a replaced op is judged at the
    position of the ``seq`` it names (where its evidence verifies), not where it sits."""
    log = FakeLog(list(corpus.lines), corpus.signer)
    path = tmp_path / "s.sqlite3"
    replaced = DELETED + 5
    with serve(log) as url:
        assert _sync(url, path, corpus)[1] == []
        other = _with_new_op(corpus)[-1]  # a valid op the first read never had
        value = orjson.loads(other)
        swapped = line_for(
            value["did"],
            value["operation"],
            replaced,
            orjson.loads(corpus.lines[replaced - 1])["createdAt"],
        )
        lines = [swapped if seq_of(x) == replaced else x for x in corpus.lines]
        log.lines, log.tree_lines = _without(lines, DELETED), list(corpus.lines)
        log.changed()
        _, findings = _sync(url, path, corpus)
    rewritten = sorted(
        (f.evidence["kind"], f.seq, f.evidence["leaf_index"])
        for f in findings
        if f.cls == "export-rewritten"
    )
    assert rewritten == [("changed", replaced, replaced - 1), ("missing", DELETED, DELETED - 1)]
    [changed] = [f for f in findings if f.evidence.get("kind") == "changed"]
    # checked, but the served line is unsigned: the auditor's observation
    assert check_finding(orjson.loads(changed.dumps()), [corpus.signer.verifier]) == "unverifiable"


def test_a_newer_op_slipped_into_the_middle_of_the_prefix_is_an_insertion(
    corpus: Corpus, tmp_path: Path
) -> None:
    """Only the run of newer ops that ends the prefix is a shift: a newer op (seq past the
    prefix) served before older ones was put there, nothing was removed to make room."""
    log = FakeLog(list(corpus.lines), corpus.signer)
    path = tmp_path / "s.sqlite3"
    with serve(log) as url:
        assert _sync(url, path, corpus)[1] == []
        newer = _with_new_op(corpus)[-1]
        lines = list(corpus.lines)
        lines.insert(DELETED - 1, newer)  # before seq DELETED; every later line moves on
        log.lines, log.tree_lines = lines, _with_new_op(corpus)
        log.changed()
        _, findings = _sync(url, path, corpus)
    rewritten = [
        (f.evidence["kind"], f.evidence["leaf_index"])
        for f in findings
        if f.cls == "export-rewritten"
    ]
    assert ("inserted", DELETED - 1) in rewritten
    assert _verdicts(findings, corpus, "export-rewritten") == {UNVERIFIABLE}


def test_ops_that_moved_with_other_bytes_are_rewritten_not_only_moved(
    corpus: Corpus, tmp_path: Path
) -> None:
    """Defect: after a deleted row every later op moves one position up, and an op that
    moved was taken as "only moved" by its ``(did, cid)`` alone, so lines served with another
    ``createdAt`` went unreported. Each is ``changed`` at the position of its own ``seq``,
    with evidence check-evidence verifies against the checkpoint matched before."""
    log = FakeLog(list(corpus.lines), corpus.signer)
    path = tmp_path / "s.sqlite3"
    redated = range(DELETED + 1, DELETED + 6)  # the first five ops that move
    with serve(log) as url:
        assert _sync(url, path, corpus)[1] == []
        tree = _with_new_op(corpus)
        lines = [
            x.replace(b'"createdAt":"2026', b'"createdAt":"2025') if seq_of(x) in redated else x
            for x in tree
        ]
        assert sum(a != b for a, b in zip(lines, tree, strict=True)) == len(redated)
        log.lines, log.tree_lines = _without(lines, DELETED), tree
        log.changed()
        notes, findings = _sync(url, path, corpus)
    rewritten = sorted(
        (f.evidence["kind"], f.seq, f.evidence["leaf_index"])
        for f in findings
        if f.cls == "export-rewritten"
    )
    changed = [("changed", s, s - 1) for s in redated]
    assert rewritten == [*changed, ("missing", DELETED, DELETED - 1)]
    keys = [corpus.signer.verifier]
    for finding in (f for f in findings if f.evidence.get("kind") == "changed"):
        assert check_finding(orjson.loads(finding.dumps()), keys) == "unverifiable"
        served = finding.evidence["served_line"].encode()
        assert seq_of(served) == finding.seq and b'"createdAt":"2025' in served
    size = len(corpus.lines)
    moved = size - DELETED - len(redated)
    summary = f"{1 + len(redated)} of {size} leaves differ ({1 + len(redated)} reported)"
    assert f"second read of the export: {summary}; {moved} more only moved" in " ".join(notes)


def test_an_op_pushed_past_the_prefix_with_other_bytes_is_changed(
    corpus: Corpus, tmp_path: Path
) -> None:
    """A line inserted in the prefix (another op served with ``seq`` K-1 too) pushes its last
    op past it: that op, read again after the prefix with another ``createdAt``, did not only
    move (defect: its identity alone was counted as served)."""
    log = FakeLog(list(corpus.lines), corpus.signer)
    path = tmp_path / "s.sqlite3"
    size = len(corpus.lines)
    with serve(log) as url:
        assert _sync(url, path, corpus)[1] == []
        lines = list(corpus.lines)
        lines[-1] = lines[-1].replace(b'"createdAt":"2026', b'"createdAt":"2025')
        assert lines[-1] != corpus.lines[-1]
        other = orjson.loads(_with_new_op(corpus)[-1])  # an op the first read never had
        when = orjson.loads(lines[DELETED - 2])["createdAt"]
        lines.insert(DELETED - 1, line_for(other["did"], other["operation"], DELETED - 1, when))
        log.lines, log.tree_lines = lines, _with_new_op(corpus)
        log.changed()
        _, findings = _sync(url, path, corpus)
    [last] = [f for f in findings if f.cls == "export-rewritten" and f.seq == size]
    assert (last.evidence["kind"], last.evidence["leaf_index"]) == ("changed", size - 1)
    keys = [corpus.signer.verifier]
    assert check_finding(orjson.loads(last.dumps()), keys) == "unverifiable"
