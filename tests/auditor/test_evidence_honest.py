"""Honest findings are never REJECTED by ``check-evidence`` (and findings bound to another op
than their evidence are): after a seq regression the rule findings carry the DID's lines in
the order the auditor judged them (``read_order``, "unverifiable"); the served-state classes
are decided by the spot check's own functions, whatever shape the served answer has; the seq
classes read ``seq`` as the auditor does (a line's canonical head, ``line_b64``); the per-line
classes are bound to their finding's ``seq``, ``did`` and ``cid``."""

from __future__ import annotations

import base64
import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditor import evidence_ops, evidence_served, spotcheck
from auditor.evidence_chain import FindingsIndex, inline_evidence
from auditor.evidence_check import (
    UNVERIFIABLE,
    VERIFIED,
    EvidenceRejected,
    status_of,
    verdict,
    verdicts,
)
from plc.exportline import build_line
from plc.keys import PrivateKey
from plc.operation import parse_operation
from plc.timestamps import format_timestamp

from .conftest import Audit, as_written, serve
from .evidence_size import _genesis, _Lines, _op
from .fakedir import FakeLog
from .generate import T0
from .test_evidence_growth import _audit, _parsed

REJECTED = "rejected"


def _status(finding: dict[str, Any], index: FindingsIndex | None = None) -> str:
    try:
        return status_of(verdict(finding, (), index))
    except EvidenceRejected:
        return REJECTED


def _statuses(findings: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The status of each finding of a file (checked as check-evidence checks it), by class."""
    index = FindingsIndex(findings)
    out: dict[str, list[str]] = {}
    for finding in findings:
        out.setdefault(finding["class"], []).append(_status(finding, index))
    return out


def _line(did: str, seq: int, second: int, op: dict[str, Any]) -> bytes:
    """The canonical line of ``op`` at ``seq``, created ``second`` seconds after T0."""
    parsed = parse_operation(op)
    when = format_timestamp(T0 + timedelta(seconds=second))
    return build_line(did, parsed.cid, seq, when, parsed.canonical_json())


def _regressed_log() -> list[bytes]:
    """One DID read in the order seq 1, 3, 2, 4, 5: G genesis; A@3 an update by key 1; B@2 a
    recovery by key 0 that nullifies A (in read order); C@4 chained to A (nullified); D@5
    chained to C (refused). In seq order A would come after B, a recovery of less authority:
    refused by the core, though the auditor accepted it."""
    log = _Lines()
    did, keys, genesis = _genesis(log, "honest-regression")
    a = _op(keys, genesis, 1, keys[1])
    b = _op(keys, genesis, 2, keys[0])
    c = _op(keys, parse_operation(a).cid, 3, keys[1])
    d = _op(keys, parse_operation(c).cid, 4, keys[1])
    reads = [(3, a), (2, b), (4, c), (5, d)]
    return [log.lines[0]] + [_line(did, seq, n + 2, op) for n, (seq, op) in enumerate(reads)]


def _seqs(lines: list[str]) -> list[int]:
    return [orjson.loads(x)["seq"] for x in lines]


def test_rule_findings_after_a_seq_regression_are_in_read_order(tmp_path: Path) -> None:
    findings = _parsed(_audit(_regressed_log(), tmp_path))
    statuses = _statuses(findings)
    # Was "REJECTED: line 2 is refused by the rules but not marked so" (lines in seq order).
    assert statuses["chained-to-nullified"] == [UNVERIFIABLE]
    assert statuses["chained-to-invalid"] == [UNVERIFIABLE]
    rule = {f["class"]: f for f in findings}
    nullified, invalid = rule["chained-to-nullified"], rule["chained-to-invalid"]
    assert nullified["evidence"]["read_order"] is True
    assert _seqs(nullified["evidence"]["lines"]) == [1, 3, 2, 4]  # as read
    assert "not in seq order" in verdict(nullified)
    # The next finding of the DID extends it, in read order too (the README's rule: inline
    # only when a lower seq was read after the finding extended).
    assert invalid["evidence"]["extends"] == {"seq": 4, "cid": nullified["cid"]}
    assert invalid["evidence"]["read_order"] is True
    assert _seqs(invalid["evidence"]["lines"]) == [5]
    # Resolved inline (another output), the same verdict.
    whole = {**invalid, "evidence": inline_evidence(invalid, FindingsIndex(findings).lookup)}
    assert _seqs(whole["evidence"]["lines"]) == [1, 3, 2, 4, 5]
    assert _status({**whole, "evidence": {**whole["evidence"], "read_order": True}}) == UNVERIFIABLE


def test_a_later_run_writes_the_lines_in_the_order_an_earlier_run_read(tmp_path: Path) -> None:
    # The first run reads 1, 3, 2 (no finding of the DID); the second, resumed, reads 4 and 5.
    lines = _regressed_log()
    _audit(lines[:3], tmp_path)
    findings = _parsed(_audit(lines, tmp_path, resume=True))
    statuses = _statuses(findings)
    # Was REJECTED: the order of the first run's ops is not in the ops table.
    assert statuses == {
        "chained-to-nullified": [UNVERIFIABLE],
        "chained-to-invalid": [UNVERIFIABLE],
    }
    first = next(f for f in findings if f["class"] == "chained-to-nullified")
    assert _seqs(first["evidence"]["lines"]) == [1, 3, 2, 4]


def test_lines_out_of_seq_order_are_replayed_so_only_when_marked(tmp_path: Path) -> None:
    findings = _parsed(_audit(_regressed_log(), tmp_path))
    nullified = next(f for f in findings if f["class"] == "chained-to-nullified")
    unmarked = copy.deepcopy(nullified)
    del unmarked["evidence"]["read_order"]
    with pytest.raises(EvidenceRejected, match="not in log order"):
        verdict(unmarked)
    # Marked, the lines must still replay as the marks say.
    marked_wrong = copy.deepcopy(nullified)
    marked_wrong["evidence"]["refused"] = [1]
    with pytest.raises(EvidenceRejected, match="marked refused but is valid"):
        verdict(marked_wrong)
    # In read order too, no op is replayed twice (it would look like a recovery of itself).
    again = copy.deepcopy(nullified)
    lines = again["evidence"]["lines"]
    again["evidence"].update(lines=[*lines[:3], lines[1], lines[3]], refused=[3])
    with pytest.raises(EvidenceRejected, match="line 3 repeats line 1"):
        verdict(again)
    # An unmarked finding extending a marked one whose lines go back in seq: rejected,
    # whether the extended lines are replayed again or continued.
    invalid = next(f for f in findings if f["class"] == "chained-to-invalid")
    plain = copy.deepcopy(invalid)
    del plain["evidence"]["read_order"]
    whole = {**plain, "evidence": inline_evidence(plain, FindingsIndex(findings).lookup)}
    with pytest.raises(EvidenceRejected, match="not in log order"):
        verdict(whole)
    with pytest.raises(EvidenceRejected, match="not in log order"):
        verdict(plain, (), FindingsIndex([nullified, plain]))  # nullified's replay continued


def test_a_seq_regression_of_bad_ops_only_keeps_seq_order(tmp_path: Path) -> None:
    # Read 1, 3 (bad signature), 2 (bad signature): nothing accepted out of order, so the
    # lines stay in seq order and the finding of 2 is verified.
    log = _Lines()
    did, keys, genesis = _genesis(log, "bad-regression")
    stranger = PrivateKey.from_seed("bad-regression-stranger")
    bad3 = _line(did, 3, 2, _op(keys, genesis, 3, stranger))
    bad2 = _line(did, 2, 3, _op(keys, genesis, 2, stranger))
    findings = _parsed(_audit([log.lines[0], bad3, bad2], tmp_path))
    rule = [f for f in findings if f["class"] == "invalid-signature"]
    assert [f["seq"] for f in rule] == [2, 3]
    assert "read_order" not in rule[0]["evidence"]
    assert [status_of(v) for v in verdicts(rule)] == [VERIFIED, VERIFIED]


def test_a_long_run_of_refused_ops_read_backwards_keeps_seq_order(tmp_path: Path) -> None:
    # A chain of 40 ops read from the last to the first: each is refused (its prev not read
    # yet), nothing is accepted out of order, so each finding holds its own line only (in
    # read order each would hold every line read before it: quadratic in the lines).
    log = _Lines()
    did, keys, cid = _genesis(log, "backwards")
    chain = []
    for n in range(1, 41):
        op = _op(keys, cid, n, keys[0])
        cid = parse_operation(op).cid
        chain.append(_line(did, n + 1, n, op))
    findings = _parsed(_audit([*reversed(chain), log.lines[0]], tmp_path))
    rule = [f for f in findings if f["class"] == "op-before-prev"]
    assert len(rule) == 40
    assert {len(f["evidence"]["lines"]) for f in rule} == {1}
    assert not any("read_order" in f["evidence"] for f in rule)
    assert set(_statuses(findings)["op-before-prev"]) == {UNVERIFIABLE}


def _served_log() -> tuple[FakeLog, list[str]]:
    log = _Lines()
    dids = []
    for n in range(4):
        did, keys, cid = _genesis(log, f"served-{n}")
        log.add(did, _op(keys, cid, 1, keys[0]))
        dids.append(did)
    fake = FakeLog(lines=log.lines)
    odd = [
        {"cid": "bafyx", "operation": {"prev": "p"}},
        {"cid": "bafyy", "operation": {"prev": "p"}},
    ]
    fake.responses_override = {
        f"/{dids[0]}/log/audit": (200, {"message": "an object, not a list"}),
        f"/{dids[1]}/log/audit": (200, [1, 2]),
        f"/{dids[2]}/log/audit": (200, odd),  # entries without nullified, ops that do not parse
    }
    return fake, dids


def test_served_answers_of_any_shape_are_decided_as_the_spot_check_does(sync: Audit) -> None:
    fake, dids = _served_log()
    with serve(fake) as url:
        findings = as_written(sync(url, spot_checks=10))
    served = [f for f in findings if f["class"] in ("served-state-mismatch", "fork")]
    assert sorted((f["class"], f["did"]) for f in served) == sorted(
        [("served-state-mismatch", d) for d in dids[:3]] + [("fork", dids[2])]
    )
    # Were REJECTED (AttributeError, MalformedOperation): unsigned answers, unverifiable.
    assert {_status(f) for f in served} == {UNVERIFIABLE}
    # The checker decides with the spot check's own functions.
    assert vars(spotcheck)["served_log"] is evidence_served.served_log
    assert vars(spotcheck)["forked_prevs"] is evidence_served.forked_prevs
    # Evidence that does not show the claim is still rejected.
    fork = next(f for f in served if f["class"] == "fork")
    lone = copy.deepcopy(fork)
    lone["evidence"]["served"] = lone["evidence"]["served"][:1]
    with pytest.raises(EvidenceRejected, match="no op has two non-nullified children"):
        verdict(lone)
    other = copy.deepcopy(fork)
    other["evidence"]["forked_prev"] = ["bafyother"]
    assert _status(other) == REJECTED
    same = copy.deepcopy(next(f for f in served if f["did"] == dids[1]))
    same["evidence"]["served"] = same["evidence"]["expected"]
    with pytest.raises(EvidenceRejected, match="matches the replay"):
        verdict(same)


def _dids_lines(count: int) -> list[bytes]:
    log = _Lines()
    for n in range(count):
        _genesis(log, f"seq-head-{n}")
    return log.lines


def test_a_cut_line_with_a_canonical_head_before_a_gap_or_a_repeat(tmp_path: Path) -> None:
    lines = _dids_lines(4)
    cut = lines[1][: lines[1].index(b'"createdAt"')] + b'"createdAt":'  # not JSON
    for name, export in (
        ("gap", [lines[0], cut, lines[3]]),
        ("repeat", [lines[0], cut, lines[1], lines[2], lines[3]]),
    ):
        work = tmp_path / name
        work.mkdir()
        statuses = _statuses(_parsed(_audit(export, work)))
        # Were REJECTED: JSONDecodeError (the seq read with a JSON parser).
        cls = "seq-gap" if name == "gap" else "duplicate-seq"
        assert statuses[cls] == [UNVERIFIABLE]
        assert statuses["malformed-entry"] == [VERIFIED]


def test_the_seq_of_a_line_is_read_off_its_head_and_line_b64(tmp_path: Path) -> None:
    lines = _dids_lines(4)
    # Line 2 repeats its "seq" key: its head says 2 (the auditor), a JSON parser reads 9.
    twice = lines[1][:-1] + b',"seq":9}'
    # Line 4 has a canonical head but is not UTF-8 (its evidence is line_b64).
    binary = lines[3][:-1] + b',"x":"\xff"}'
    findings = _parsed(_audit([lines[0], twice, binary], tmp_path))
    gap = next(f for f in findings if f["class"] == "seq-gap")
    assert gap["seq"] == 4 and "line_b64" in gap["evidence"]
    assert gap["evidence"]["missing"] == [3, 3]
    # Was REJECTED: "no gap" (seq 9 read) and KeyError('line').
    assert _status(gap) == UNVERIFIABLE
    assert evidence_ops.head_seq(twice) == 2
    moved = {**gap, "seq": 5}  # bound to its line's seq
    with pytest.raises(EvidenceRejected, match="not at the finding's seq"):
        verdict(moved)
    assert base64.b64decode(gap["evidence"]["line_b64"]) == binary


def test_per_line_findings_are_bound_to_their_op(verify: Audit) -> None:
    log = _Lines()
    did, keys, genesis = _genesis(log, "bound")
    update = _op(keys, genesis, 1, keys[0])
    log.add(did, update)
    lines = log.lines
    value = orjson.loads(lines[1])
    wrong = lines[1].replace(
        value["cid"].encode(), b"bafyreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )
    spaced = lines[0].replace(b",", b", ", 1)  # not canonical
    repeat = _line(did, 3, 9, update)  # the update again, at seq 3
    findings = as_written(verify([spaced, wrong, repeat], canonical_lines=True))
    by_class = {f["class"]: f for f in findings}
    assert set(by_class) == {"wrong-cid", "non-canonical-line", "duplicate-op"}
    for finding in by_class.values():
        assert _status(finding) == VERIFIED
        other = "did:plc:" + "c" * 24
        # Were verified: the finding names another op than its evidence line.
        for field, value in (("seq", 777), ("did", other), ("cid", "bafyother")):
            with pytest.raises(EvidenceRejected, match="the line is"):
                verdict({**finding, field: value})


def test_served_answers_of_a_did_read_out_of_seq_order_are_not_rejected(sync: Audit) -> None:
    """After a seq regression the auditor accepted G, A@3, B@2 in that order; in seq order
    the core refuses A. A served audit log showing both children of G active is a fork by
    itself, and its mismatch with the replay rests on the order the auditor read: both
    unverifiable, not "the lines do not replay" (REJECTED)."""
    lines = _regressed_log()  # read seqs 1, 3, 2, 4, 5
    did = orjson.loads(lines[0])["did"]
    served = [
        {**{k: e[k] for k in ("did", "operation", "cid", "createdAt")}, "nullified": False}
        for e in (orjson.loads(x) for x in lines[:3])
    ]
    fake = FakeLog(lines=lines)
    fake.refetch = {orjson.loads(x)["seq"]: x for x in lines}
    fake.responses_override = {f"/{did}/log/audit": (200, served)}
    with serve(fake) as url:
        findings = as_written(sync(url, spot_checks=10))
    statuses = {
        f["class"]: _status(f) for f in findings if f["class"] in ("fork", "served-state-mismatch")
    }
    assert statuses == {"fork": UNVERIFIABLE, "served-state-mismatch": UNVERIFIABLE}, statuses
