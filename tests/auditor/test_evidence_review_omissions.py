"""Review findings on per-DID rule evidence: a claim that rests on lines left out of the
evidence is never verified, a finding extending a rejected one is rejected, an honest run
after a seq regression writes findings that check, two honest outputs put together check,
and an absurd tolerance rejects one finding, not the file."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditor import evidence_time, state
from auditor.evidence_chain import inline_evidence
from auditor.evidence_check import (
    UNVERIFIABLE,
    VERIFIED,
    EvidenceRejected,
    FindingsIndex,
    check_finding,
    status_of,
    verdict,
    verdicts,
)
from auditor.report import state_lookup, write_findings
from plc.exportline import build_line
from plc.keys import PrivateKey
from plc.operation import parse_operation
from plc.timestamps import format_timestamp

from .evidence_size import _genesis, _Lines, _op, bad_off_valid_log, chained_log
from .generate import T0
from .test_evidence_growth import _audit, _parsed

REPO = Path(__file__).resolve().parents[2]


def _finding(cls: str, line: str, lines: list[str], refused: list[int], **extra: Any) -> Any:
    """A per-DID rule finding of the op of ``line`` with evidence ``lines`` / ``refused``."""
    value = orjson.loads(line)
    evidence = {**extra, "lines": lines, "refused": refused}
    return {
        "class": cls,
        "severity": "misbehaviour",
        "seq": value["seq"],
        "did": value["did"],
        "cid": value["cid"],
        "message": "claimed",
        "evidence": evidence,
    }


def _honest() -> list[str]:
    """An honest DID's lines: a genesis G, then X, Y, Z each validly signed on the one
    before (no rule broken anywhere)."""
    log = _Lines()
    did, keys, cid = _genesis(log, "honest-review")
    for n in (1, 2, 3):
        cid = log.add(did, _op(keys, cid, n, keys[0]))
    return [line.decode() for line in log.lines]


def _outcome(findings: list[Any], at: int) -> str:
    try:
        return status_of(check_finding(findings[at], [], FindingsIndex(findings)))
    except EvidenceRejected as exc:
        return f"rejected: {exc}"


@pytest.mark.parametrize(
    ("lines", "refused", "accused"),
    [
        pytest.param([1, 2], [0], 2, id="the genesis left out"),
        pytest.param([0, 2, 3], [1], 3, id="a line in the middle left out"),
    ],
)
def test_a_chain_on_an_op_refused_for_a_line_left_out_is_not_verified(
    lines: list[int], refused: list[int], accused: int
) -> None:
    honest = _honest()
    forged = _finding("chained-to-invalid", honest[accused], [honest[i] for i in lines], refused)
    # The op "refused" is honest: only the absence of a line makes the core refuse it, and
    # that absence is the auditor's word (it was "verified").
    outcome = verdict(forged)
    assert status_of(outcome) == UNVERIFIABLE, outcome
    assert "prev is refused for a line the evidence lacks" in outcome
    # The same lines, all of them: the marks are false and the claim rejected.
    whole = _finding("chained-to-invalid", honest[accused], honest[: accused + 1], [accused - 1])
    with pytest.raises(EvidenceRejected, match="marked refused but is valid"):
        verdict(whole)


def test_a_finding_that_extends_a_rejected_one_is_rejected() -> None:
    honest = _honest()
    # A base that is itself rejected (X's prev is not among its lines) supplies X as a
    # refused line to a finding chained on it (it was "verified").
    base = _finding("invalid-signature", honest[1], [honest[1]], [])
    extends = {"seq": base["seq"], "cid": base["cid"]}
    chained = _finding("chained-to-invalid", honest[2], [honest[2]], [], extends=extends)
    assert _outcome([base, chained], 0).startswith("rejected: prev is not in the history")
    assert _outcome([base, chained], 1) == (
        "rejected: extends the finding of seq 2, which is rejected: prev is not in the history"
    )
    # In either order, and with the reason of the first rejected finding along the chain.
    later = _finding("chained-to-invalid", honest[3], [honest[3]], [], extends=_ref(chained))
    for findings in ([base, chained, later], [later, chained, base]):
        at = findings.index(later)
        assert "which is rejected: prev is not in the history" in _outcome(findings, at)


def _ref(finding: dict[str, Any]) -> dict[str, Any]:
    return {"seq": finding["seq"], "cid": finding["cid"]}


def test_a_chain_whose_first_finding_claims_the_wrong_rule_is_rejected(tmp_path: Path) -> None:
    findings = _parsed(_audit(chained_log(3), tmp_path))
    assert set(verdicts(findings)) == {VERIFIED}
    # The bad op's lines still show it refused, but its finding's claim is false: the
    # findings resting on it do not hold up (they were verified).
    wrong = copy.deepcopy(findings)
    wrong[0]["class"] = "late-recovery"
    for at in range(1, len(wrong)):
        assert "which is rejected: core says" in _outcome(wrong, at)


def test_a_seq_regression_leaves_no_line_out_of_the_findings(tmp_path: Path) -> None:
    # Read order 1, 3 (bad signature), 2 (valid), 4 (bad signature, on 2): the finding of 4
    # may not extend that of 3, which was written before 2 was read (it was REJECTED:
    # "prev is not in the history").
    log = _Lines()
    did, keys, genesis = _genesis(log, "regression")
    stranger = PrivateKey.from_seed("regression-stranger")

    def line(seq: int, read: int, op: dict[str, Any]) -> bytes:
        parsed = parse_operation(op)
        when = format_timestamp(T0 + timedelta(seconds=read))  # createdAt in read order
        return build_line(did, parsed.cid, seq, when, parsed.canonical_json())

    valid = _op(keys, genesis, 2, keys[0])
    bad3, ok2 = line(3, 2, _op(keys, genesis, 3, stranger)), line(2, 3, valid)
    bad4 = line(4, 4, _op(keys, parse_operation(valid).cid, 4, stranger))
    bad5 = line(5, 5, _op(keys, parse_operation(valid).cid, 5, stranger))
    findings = _parsed(_audit([log.lines[0], bad3, ok2, bad4, bad5], tmp_path))
    rule = [f for f in findings if f["class"] == "invalid-signature"]
    assert [f["seq"] for f in rule] == [3, 4, 5]
    assert "extends" not in rule[1]["evidence"]
    assert [orjson.loads(x)["seq"] for x in rule[1]["evidence"]["lines"]] == [1, 2, 3, 4]
    # Read after the line of 2, the finding of 4 holds it: the next one extends it again.
    assert rule[2]["evidence"]["extends"] == _ref(rule[1])
    assert [status_of(v) for v in verdicts(rule)] == [VERIFIED] * 3


def test_findings_of_one_op_written_inline_and_by_reference_are_one(tmp_path: Path) -> None:
    # One output writes a finding inline (its base is not in that output: a run's
    # --findings after a run of the previous version, whose state extends across runs),
    # another by reference: put together they were "two findings ... different evidence".
    chain = _parsed(_audit(chained_log(6), tmp_path))
    assert all("extends" in f["evidence"] for f in chain[1:])
    inline = [{**f, "evidence": inline_evidence(f, FindingsIndex(chain).lookup)} for f in chain]
    for together in (inline[2:] + chain, chain + inline[2:], inline[3:4] + chain[4:] + chain):
        assert set(verdicts(together)) == {VERIFIED}
    # The same op with other refused marks is another finding: which one is meant is unclear.
    marked = copy.deepcopy(inline[3])
    marked["evidence"]["refused"] = []
    with pytest.raises(EvidenceRejected, match="two findings"):
        check_finding(chain[4], [], FindingsIndex([marked, *chain]))
    with pytest.raises(EvidenceRejected, match="two findings"):
        check_finding(chain[4], [], FindingsIndex([*chain, marked]))


def test_a_resumed_run_and_the_report_put_together_check(tmp_path: Path) -> None:
    lines = bad_off_valid_log(30, 12)
    first = _audit(lines[:36], tmp_path)
    second = _audit(lines, tmp_path, resume=True)
    conn = state.connect(tmp_path / "state.sqlite3", create=False)
    try:
        report = io.BytesIO()
        write_findings([f for _, f in state.load_findings(conn)], report, state_lookup(conn))
    finally:
        conn.close()
    for outputs in ([second, report.getvalue()], [report.getvalue(), second]):
        findings = _parsed(b"".join(outputs))
        assert set(verdicts(findings)) == {VERIFIED}
    together = _parsed(first + second + report.getvalue())
    assert len(together) == 24
    assert set(verdicts(together)) == {VERIFIED}


def _backdated(tolerance_ms: int) -> dict[str, Any]:
    """A ``backdated-op`` finding: seq 2 is a year before seq 1."""
    log = _Lines()
    did, keys, genesis = _genesis(log, "backdated-review")
    op = parse_operation(_op(keys, genesis, 1, keys[0]))
    high = orjson.loads(log.lines[0])
    high["createdAt"] = "2025-01-01T00:00:00.000Z"
    line = build_line(did, op.cid, 2, "2024-01-01T00:00:00.000Z", op.canonical_json())
    evidence = {
        "high_water_line": orjson.dumps(high).decode(),
        "line": line.decode(),
        "tolerance_ms": tolerance_ms,
    }
    return {"class": "backdated-op", "seq": 2, "did": did, "cid": op.cid, "evidence": evidence}


def test_a_tolerance_too_large_rejects_its_finding_not_the_file(tmp_path: Path) -> None:
    assert verdict(_backdated(60_000)) == VERIFIED
    with pytest.raises(EvidenceRejected, match="tolerance_ms is larger than"):
        verdict(_backdated(10**17))  # beyond what a timedelta holds: OverflowError
    path = tmp_path / "findings.jsonl"
    path.write_bytes(b"".join(orjson.dumps(_backdated(t)) + b"\n" for t in (10**17, 60_000)))
    done = subprocess.run(
        [sys.executable, "-m", "auditor", "check-evidence", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 verified, 0 unverifiable, 1 rejected" in done.stdout, done.stdout


def test_an_overflow_in_a_check_rejects_the_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def overflow(_ev: dict[str, Any]) -> Any:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(evidence_time, "_tolerance", overflow)
    with pytest.raises(EvidenceRejected, match="OverflowError"):
        verdict(_backdated(60_000))
